"""The lease keeper thread: shard membership, lease renewal, even spread of partitions over
the live shards (acquire free ones, release surplus), every lease_ms / 3."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable

from ._core import Core, Part

__all__ = ["LeaseKeeper"]


class LeaseKeeper:
    def __init__(self, core: Core, adopt: Callable[[Part], None],
                 lose: Callable[[Part, bool], None]) -> None:
        self.core = core
        self._adopt = adopt
        self._lose = lose
        self.period_s = core.config.lease_ms / 3000
        self.suspended = threading.Event()   # tests: a shard whose renewals stall
        self._reacquire_mu = threading.Lock()
        self.live_shards: list[str] = []
        self.redis_ms = 0
        self.thread = threading.Thread(target=self._run, name=f"mff-lease-{core.name}",
                                       daemon=True)

    def _run(self) -> None:
        self.core.run(self._step)

    def _step(self) -> None:
        if self.suspended.is_set():
            self.core.stop_event.wait(self.period_s / 4)
            return
        self.tick()
        self.core.stop_event.wait(self.period_s)

    def tick(self) -> None:
        if self.suspended.is_set():
            return
        self._membership()
        self._renew()
        if core_stopping(self.core):
            return
        target = self._target()
        held = sorted(self.core.parts)
        if len(held) > target:
            for p in held[target:]:
                self._release_one(p)
        elif len(held) < target:
            self._acquire(target - len(held))

    def _target(self) -> int:
        """This shard's even share: N // live, plus one for the first N % live names in
        sorted order, so the shares sum to N (ceil(N / live) each would leave 2/2/0)."""
        live = sorted(self.live_shards)
        n = self.core.config.partitions
        if self.core.name not in live:
            live = sorted([*live, self.core.name])
        share, extra = divmod(n, len(live))
        return share + (1 if live.index(self.core.name) < extra else 0)

    def _membership(self) -> None:
        core = self.core
        with core.mu:
            parts = list(core.parts.values())
        now = core.wall()
        horizons = [part.horizon for part in parts if part.live]
        lag_ms = max(0.0, (now - min(horizons)) * 1000) if horizons else 0.0
        fields = ["http_url", core.config.http_url or "",
                  "partitions", ",".join(str(p.number) for p in sorted(parts,
                                                                         key=lambda x: x.number)),
                  "lag_ms", f"{lag_ms:.1f}",
                  "lease_ms", str(core.config.lease_ms)]
        now_ms, live = core.scripts.member(keys=[core.keys.shards, core.keys.shard(core.name)],
                                           args=[core.name, core.config.lease_ms, *fields])
        self.redis_ms = int(now_ms)
        self.live_shards = list(live)

    def _renew(self) -> None:
        core, keys, cfg = self.core, self.core.keys, self.core.config
        with core.mu:
            parts = list(core.parts.values())
        if not parts:
            return
        pipe = core.client.pipeline(transaction=False)
        now = core.wall()
        holders = [part.holder for part in parts]
        for part in parts:
            minid = ""
            if part.live:
                # Keep what a takeover replays; never trim what this owner has not read.
                keep_ms = int((now - part.window_s - cfg.replay_margin_s) * 1000)
                minid = f"{min(keep_ms, int(part.pos.split('-', 1)[0]))}-0"
            core.scripts.renew(keys=[keys.lease(part.number), keys.pos(part.number),
                                     keys.hb(part.number)],
                               args=[part.holder, cfg.lease_ms, part.pos if part.live else "",
                                     minid], client=pipe)
        results = pipe.execute()
        for part, seen, result in zip(parts, holders, results):
            if result == 1:
                continue
            if result == 0 and self.reacquire(part, seen):
                continue
            if result == -1 and part.holder != seen:
                continue    # the publisher re-took it under a new token meanwhile
            self._lose(part, True)

    def reacquire(self, part: Part, seen: str) -> bool:
        """The lease `seen` expired while nobody else took it (a Redis restart or pause):
        take it again under a new token and carry on from the same position, losing
        nothing. True also when another thread of this shard already did."""
        core = self.core
        with self._reacquire_mu:
            if part.holder != seen:
                return core.parts.get(part.number) is part
            token = int(core.scripts.acquire(keys=[core.keys.lease(part.number),
                                                   core.keys.fence(part.number)],
                                             args=[core.name, core.config.lease_ms]))
            if token <= 0:
                return False
            with core.mu:
                part.token = token
                part.holder = f"{core.name}|{token}"
                held = core.parts.get(part.number) is part
        if not held:    # dropped meanwhile: give it back
            core.scripts.release(keys=[core.keys.lease(part.number)], args=[part.holder])
            return False
        core.stats.leases_reacquired += 1
        return True

    def _acquire(self, wanted: int) -> None:
        core, keys, n = self.core, self.core.keys, self.core.config.partitions
        holders = core.client.mget([keys.lease(p) for p in range(n)])
        # Start at an offset of our own, so shards starting together contend less.
        start = zlib.crc32(core.name.encode("utf-8")) % n
        order = [(start + i) % n for i in range(n)]
        for p in order:
            if wanted <= 0 or core.stop_event.is_set():
                return
            if holders[p] is not None or p in core.parts:
                continue
            token = int(core.scripts.acquire(keys=[keys.lease(p), keys.fence(p)],
                                             args=[core.name, core.config.lease_ms]))
            if token <= 0:
                continue
            part = Part(number=p, token=token, holder=f"{core.name}|{token}")
            with core.mu:
                core.parts[p] = part
                core.set_owned()
            self._adopt(part)
            wanted -= 1

    def _release_one(self, p: int) -> None:
        core = self.core
        with core.mu:
            part = core.parts.get(p)
        if part is None:
            return
        self._lose(part, False)   # stop publishing first, then let the lease go
        core.scripts.release(keys=[core.keys.lease(p)], args=[part.holder])

    def release_all(self) -> None:
        core = self.core
        with core.mu:
            parts = list(core.parts.values())
        for part in parts:
            self._lose(part, False)
        pipe = core.client.pipeline(transaction=False)
        for part in parts:
            core.scripts.release(keys=[core.keys.lease(part.number)], args=[part.holder],
                                 client=pipe)
        core.scripts.leave(keys=[core.keys.shards, core.keys.shard(core.name)],
                           args=[core.name], client=pipe)
        pipe.execute()


def core_stopping(core: Core) -> bool:
    return core.stop_event.is_set()
