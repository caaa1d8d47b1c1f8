"""The user guide's code blocks (heartbeat_monitor_guide.md), verbatim except for
the import line (moai_flow -> moai_flow_fast) and, where the guide would wait, a
virtual clock injected by a patched HeartbeatMonitor factory (which also selects
the engine under test). Collaborators the guide assumes (coordinator,
restart_agent, logger, ...) are stubs."""
from __future__ import annotations

import logging
import re
import time
from datetime import datetime

import pytest

import moai_flow_fast
import moai_flow_fast.monitoring
from moai_flow_fast import HealthState, VirtualClock

RealMonitor = moai_flow_fast.HeartbeatMonitor
H, D, C, F = (HealthState.HEALTHY, HealthState.DEGRADED,
              HealthState.CRITICAL, HealthState.FAILED)


def adapt(code):
    """The only source change: the import line."""
    new = code.replace("from moai_flow.monitoring import", "from moai_flow_fast.monitoring import")
    assert "moai_flow." not in new.replace("moai_flow.core", "")
    return new


class Coordinator:
    """Stub of the guide's SwarmCoordinator."""

    def __init__(self, topology_type="mesh"):
        self.agent_registry = {}
        self.calls = []

    def register_agent(self, agent_id, metadata):
        self.agent_registry[agent_id] = metadata
        self.calls.append(("register", agent_id))

    def unregister_agent(self, agent_id):
        self.agent_registry.pop(agent_id, None)
        self.calls.append(("unregister", agent_id))

    def send_message(self, src, dst, msg):
        self.calls.append(("send", src, dst))

    def broadcast_message(self, src, msg):
        self.calls.append(("broadcast", src, msg))

    def shutdown(self):
        self.calls.append(("shutdown",))


@pytest.fixture
def guide(engine, vclock, monkeypatch):
    """Patches HeartbeatMonitor (both import paths) with a factory that picks the
    engine under test and, unless settings["clock"] is None, the virtual clock."""
    made = []
    settings = {"clock": vclock}

    def HeartbeatMonitor(*args, **kwargs):
        kwargs.setdefault("engine", engine)
        kwargs.setdefault("clock", settings["clock"])
        m = RealMonitor(*args, **kwargs)
        made.append(m)
        return m

    monkeypatch.setattr(moai_flow_fast, "HeartbeatMonitor", HeartbeatMonitor)
    monkeypatch.setattr(moai_flow_fast.monitoring, "HeartbeatMonitor", HeartbeatMonitor)
    settings["made"] = made
    yield settings
    for m in made:
        m.shutdown()


def namespace(**extra):
    ns = {"__name__": "guide_example", "logger": logging.getLogger("guide"), "time": time}
    ns.update(extra)
    return ns


QUICK_START = '''
from moai_flow.monitoring import HeartbeatMonitor, HealthState

# Initialize monitor
monitor = HeartbeatMonitor(
    interval_ms=5000,      # 5 second heartbeat interval
    failure_threshold=3    # 3 missed beats = 15s = failure
)

# Start monitoring an agent
monitor.start_monitoring("agent-001")

# Record heartbeats
monitor.record_heartbeat("agent-001")
monitor.record_heartbeat("agent-001", metadata={"cpu": 45.2})

# Check health
health = monitor.check_agent_health("agent-001")
if health == HealthState.FAILED:
    print("Agent has failed!")

# Get unhealthy agents
failed_agents = monitor.get_unhealthy_agents(HealthState.FAILED)
critical_agents = monitor.get_unhealthy_agents(HealthState.CRITICAL)
'''

CHECK_HEALTH = '''
health = monitor.check_agent_health("agent-001")
if health == HealthState.FAILED:
    print("Agent has failed!")
failed_agents = monitor.get_unhealthy_agents(HealthState.FAILED)
critical_agents = monitor.get_unhealthy_agents(HealthState.CRITICAL)
'''


def test_quick_start_system_clock(guide, capsys):
    guide["clock"] = None                      # as written: real clock, background thread
    ns = namespace()
    exec(adapt(QUICK_START), ns)
    m = ns["monitor"]
    assert ns["health"] == HealthState.HEALTHY
    assert ns["failed_agents"] == [] and ns["critical_agents"] == []
    assert [r["metadata"] for r in m.get_heartbeat_history("agent-001")] == [{}, {"cpu": 45.2}]
    assert m.monitoring_thread.name == "HeartbeatMonitor-Daemon"
    assert capsys.readouterr().out == ""


def test_quick_start_virtual_time(guide, vclock, capsys):
    ns = namespace()
    exec(adapt(QUICK_START), ns)
    vclock.advance(10)                         # 2 intervals: CRITICAL
    exec(CHECK_HEALTH, ns)
    assert ns["health"] == HealthState.CRITICAL
    assert ns["critical_agents"] == ["agent-001"] and ns["failed_agents"] == []
    vclock.advance(5)                          # 15 s: FAILED
    exec(CHECK_HEALTH, ns)
    assert ns["health"] == HealthState.FAILED
    assert ns["failed_agents"] == ["agent-001"]
    assert capsys.readouterr().out == "Agent has failed!\n"


INTEGRATION = '''
from moai_flow.core import SwarmCoordinator
from moai_flow.monitoring import HeartbeatMonitor, HealthState

# Initialize coordinator and monitor
coordinator = SwarmCoordinator(topology_type="mesh")
monitor = HeartbeatMonitor(interval_ms=5000, failure_threshold=3)

# Register agent in both
agent_id = "expert-backend-001"
coordinator.register_agent(agent_id, {"type": "expert-backend"})
monitor.start_monitoring(agent_id)

# Update heartbeat when agent sends messages
coordinator.send_message(agent_id, "agent-002", {"task": "process"})
monitor.record_heartbeat(agent_id)

# Periodic health check
health = monitor.check_agent_health(agent_id)
if health in [HealthState.CRITICAL, HealthState.FAILED]:
    coordinator.broadcast_message(
        "alfred",
        {"alert": f"Agent {agent_id} health: {health.value}"}
    )
'''


def test_integration_with_coordinator(guide, vclock):
    code = adapt(INTEGRATION).replace("from moai_flow.core import SwarmCoordinator\n", "")
    ns = namespace(SwarmCoordinator=Coordinator)
    exec(code, ns)
    assert ns["health"] is H
    assert ("broadcast", "alfred", {"alert": "Agent expert-backend-001 health: critical"}) \
        not in ns["coordinator"].calls
    vclock.advance(11)
    check = INTEGRATION.split("# Periodic health check")[1]
    exec(check, ns)
    assert ns["coordinator"].calls[-1] == (
        "broadcast", "alfred", {"alert": "Agent expert-backend-001 health: critical"})


ALERT_CALLBACKS = '''
def on_agent_failed(agent_id: str, state: HealthState, details: dict):
    """Called when agent enters FAILED state."""
    print(f"CRITICAL: Agent {agent_id} has failed!")
    print(f"Last heartbeat: {details['last_heartbeat']}")
    print(f"Elapsed: {details['elapsed_seconds']}s")

    # Take action
    coordinator.unregister_agent(agent_id)
    restart_agent(agent_id)

def on_agent_degraded(agent_id: str, state: HealthState, details: dict):
    """Called when agent enters DEGRADED state."""
    print(f"WARNING: Agent {agent_id} showing signs of degradation")
    print(f"Previous state: {details['previous_state']}")

# Configure alerts
monitor.configure_alerts(
    on_degraded=True,
    on_critical=True,
    on_failed=True,
    degraded_callback=on_agent_degraded,
    failed_callback=on_agent_failed
)
'''


def test_alert_callbacks(guide, vclock, capsys):
    ns = namespace()
    exec(adapt(QUICK_START), ns)
    restarted = []
    coord = Coordinator()
    coord.register_agent("agent-001", {})
    ns.update(coordinator=coord, restart_agent=restarted.append)
    exec(adapt(ALERT_CALLBACKS), ns)
    m = ns["monitor"]
    vclock.advance(5)
    m.advance()
    vclock.advance(11)
    m.advance()
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "WARNING: Agent agent-001 showing signs of degradation",
        "Previous state: healthy",
        "CRITICAL: Agent agent-001 has failed!",
        "Last heartbeat: " + datetime.fromtimestamp(1_700_000_000.0).isoformat(),
        "Elapsed: 16.0s",
    ]
    assert restarted == ["agent-001"]
    assert ("unregister", "agent-001") in coord.calls


CUSTOM_INTERVALS = '''
# Different agents can have different heartbeat requirements

# Fast-paced agents (real-time processing)
monitor.start_monitoring(
    "realtime-agent-001",
    interval_ms=1000,      # 1 second
    failure_threshold=2    # 2 missed = 2s failure
)

# Batch processing agents (slower)
monitor.start_monitoring(
    "batch-agent-001",
    interval_ms=30000,     # 30 seconds
    failure_threshold=5    # 5 missed = 150s failure
)
'''


def test_custom_intervals(guide, vclock):
    ns = namespace()
    exec(adapt(QUICK_START), ns)
    exec(adapt(CUSTOM_INTERVALS), ns)
    m = ns["monitor"]
    assert m.monitoring_agents["realtime-agent-001"]["interval_ms"] == 1000
    assert m.monitoring_agents["realtime-agent-001"]["failure_threshold"] == 2
    assert m.monitoring_agents["batch-agent-001"]["interval_ms"] == 30000
    assert m.monitoring_agents["batch-agent-001"]["failure_threshold"] == 5
    m.record_heartbeat("realtime-agent-001")
    m.record_heartbeat("batch-agent-001")
    vclock.advance(2)                                   # "2 missed = 2s failure"
    assert m.check_agent_health("realtime-agent-001") is F
    assert m.check_agent_health("batch-agent-001") is H
    vclock.advance(148)                                 # "5 missed = 150s failure"
    assert m.check_agent_health("batch-agent-001") is F
    assert m.get_unhealthy_agents(F) == ["agent-001", "realtime-agent-001", "batch-agent-001"]


HISTORY = '''
from datetime import datetime, timedelta

# Get recent heartbeat history
agent_id = "agent-001"
history = monitor.get_heartbeat_history(agent_id)

print(f"Total heartbeats: {len(history)}")
for record in history[-5:]:  # Last 5
    timestamp = datetime.fromtimestamp(record["timestamp"])
    print(f"  {timestamp}: {record['metadata']}")

# Get heartbeats in time range
start = datetime.now() - timedelta(hours=1)
end = datetime.now()
recent_history = monitor.get_heartbeat_history(agent_id, (start, end))

# Calculate average heartbeat interval
if len(recent_history) > 1:
    intervals = []
    for i in range(1, len(recent_history)):
        interval = recent_history[i]["timestamp"] - recent_history[i-1]["timestamp"]
        intervals.append(interval)
    avg_interval = sum(intervals) / len(intervals)
    print(f"Average heartbeat interval: {avg_interval:.2f}s")
'''


def test_history_analysis(guide, capsys):
    # wall clock of the virtual clock set so that the heartbeats lie in the last hour
    guide["clock"] = VirtualClock(start=1000.0, wall_start=time.time() - 600)
    ns = namespace()
    exec(adapt(QUICK_START), ns)
    m = ns["monitor"]
    clk = guide["clock"]
    for i in range(10):
        clk.advance(2)
        m.record_heartbeat("agent-001", {"seq": i})
    capsys.readouterr()
    exec(adapt(HISTORY), ns)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Total heartbeats: 12"
    assert len(out) == 7
    assert [re.search(r"\{.*\}$", line).group(0) for line in out[1:6]] == [
        f"{{'seq': {i}}}" for i in range(5, 10)]
    assert len(ns["recent_history"]) == 12
    # 11 gaps: 0 s between the two quick-start beats, then 2 s each -> 20/11
    assert out[6] == f"Average heartbeat interval: {20 / 11:.2f}s"


STATS = '''
# Get overall monitoring health
stats = monitor.get_monitoring_stats()

print(f"Total agents monitored: {stats['total_agents']}")
print(f"Health distribution:")
print(f"  Healthy: {stats['health_distribution']['healthy']}")
print(f"  Degraded: {stats['health_distribution']['degraded']}")
print(f"  Critical: {stats['health_distribution']['critical']}")
print(f"  Failed: {stats['health_distribution']['failed']}")
print(f"Total heartbeats recorded: {stats['total_heartbeats']}")
'''


def test_monitoring_statistics(guide, vclock, capsys):
    ns = namespace()
    exec(adapt(QUICK_START), ns)
    m = ns["monitor"]
    exec(adapt(CUSTOM_INTERVALS), ns)
    m.record_heartbeat("realtime-agent-001")
    vclock.advance(1.5)
    m.record_heartbeat("batch-agent-001")
    capsys.readouterr()
    exec(adapt(STATS), ns)
    assert capsys.readouterr().out.splitlines() == [
        "Total agents monitored: 3",
        "Health distribution:",
        "  Healthy: 2",
        "  Degraded: 1",
        "  Critical: 0",
        "  Failed: 0",
        "Total heartbeats recorded: 4",
    ]


BEST_PRACTICE_INTERVALS = '''
# Real-time agents (< 1s processing time)
monitor.start_monitoring("realtime-agent", interval_ms=1000)

# Standard agents (1-5s processing time)
monitor.start_monitoring("standard-agent", interval_ms=5000)

# Batch/long-running agents (> 10s processing time)
monitor.start_monitoring("batch-agent", interval_ms=30000)
'''

BEST_PRACTICE_KEY_POINTS = '''
# Record heartbeat when agent:
# 1. Starts processing a task
monitor.record_heartbeat(agent_id, {"status": "task_started"})

# 2. Completes a task
monitor.record_heartbeat(agent_id, {"status": "task_completed"})

# 3. Sends a message
coordinator.send_message(agent_id, target, message)
monitor.record_heartbeat(agent_id, {"action": "message_sent"})

# 4. Makes a significant state change
agent_state_changed(agent_id, new_state)
monitor.record_heartbeat(agent_id, {"state": new_state})
'''


def test_best_practices(guide):
    ns = namespace()
    exec(adapt(QUICK_START), ns)
    exec(adapt(BEST_PRACTICE_INTERVALS), ns)
    m = ns["monitor"]
    assert [m.monitoring_agents[a]["interval_ms"] for a in
            ("realtime-agent", "standard-agent", "batch-agent")] == [1000, 5000, 30000]
    assert all(m.monitoring_agents[a]["failure_threshold"] == 3 for a in m.monitoring_agents)
    ns.update(agent_id="standard-agent", coordinator=Coordinator(), target="agent-002",
              message={"x": 1}, agent_state_changed=lambda a, s: None, new_state="busy")
    exec(adapt(BEST_PRACTICE_KEY_POINTS), ns)
    assert [r["metadata"] for r in m.get_heartbeat_history("standard-agent")] == [
        {"status": "task_started"}, {"status": "task_completed"},
        {"action": "message_sent"}, {"state": "busy"}]


GRACEFUL_SHUTDOWN = '''
import atexit

# Register shutdown handler
atexit.register(monitor.shutdown)

# Or explicit shutdown
try:
    run_application()
finally:
    monitor.shutdown()
    coordinator.shutdown()
'''


def test_graceful_shutdown(guide):
    guide["clock"] = None
    ns = namespace()
    exec(adapt(QUICK_START), ns)
    coord = Coordinator()
    ns.update(run_application=lambda: None, coordinator=coord)
    exec(adapt(GRACEFUL_SHUTDOWN), ns)
    m = ns["monitor"]
    assert m.get_monitoring_stats()["monitoring_thread_alive"] is False
    assert coord.calls == [("shutdown",)]
    m.shutdown()                         # what atexit will do again: harmless


RECOVERY_PATTERN = '''
def on_agent_failed(agent_id: str, state: HealthState, details: dict):
    """Automatically restart failed agents."""
    logger.error(f"Agent {agent_id} failed, attempting restart...")

    # Stop monitoring failed agent
    monitor.stop_monitoring(agent_id)
    coordinator.unregister_agent(agent_id)

    # Restart agent
    new_agent = create_agent(agent_id)
    coordinator.register_agent(agent_id, new_agent.metadata)
    monitor.start_monitoring(agent_id)

    logger.info(f"Agent {agent_id} restarted successfully")

monitor.configure_alerts(
    on_failed=True,
    failed_callback=on_agent_failed
)
'''


class _NewAgent:
    def __init__(self, agent_id):
        self.metadata = {"restarted": agent_id}


def test_automatic_agent_recovery_virtual(guide, vclock, caplog):
    caplog.set_level(logging.INFO, logger="guide")
    ns = namespace()
    exec(adapt(QUICK_START), ns)
    m = ns["monitor"]
    coord = Coordinator()
    coord.register_agent("agent-001", {})
    ns.update(coordinator=coord, create_agent=_NewAgent)
    exec(adapt(RECOVERY_PATTERN), ns)
    m.start_monitoring("agent-002")
    m.record_heartbeat("agent-002")
    vclock.advance(14.999)
    m.advance()
    assert [r.getMessage() for r in caplog.records if r.name == "guide"] == []
    vclock.advance(0.001)
    m.advance()
    msgs = [r.getMessage() for r in caplog.records if r.name == "guide"]
    assert msgs == ["Agent agent-001 failed, attempting restart...",
                    "Agent agent-001 restarted successfully",
                    "Agent agent-002 failed, attempting restart...",
                    "Agent agent-002 restarted successfully"]
    for a in ("agent-001", "agent-002"):
        assert a in m.monitoring_agents
        assert m.get_heartbeat_history(a) == []
        assert m.monitoring_agents[a]["last_state"] is H
        assert coord.agent_registry[a] == {"restarted": a}
    # restarted agents are monitored afresh
    m.record_heartbeat("agent-001")
    vclock.advance(15)
    m.advance()
    msgs = [r.getMessage() for r in caplog.records if r.name == "guide"]
    assert msgs[4:] == ["Agent agent-001 failed, attempting restart...",
                        "Agent agent-001 restarted successfully"]


def test_automatic_agent_recovery_real_clock(guide, caplog):
    caplog.set_level(logging.INFO, logger="guide")
    guide["clock"] = None
    ns = namespace()
    ns["monitor"] = moai_flow_fast.monitoring.HeartbeatMonitor(interval_ms=100, failure_threshold=2)
    m = ns["monitor"]
    coord = Coordinator()
    ns.update(coordinator=coord, create_agent=_NewAgent)
    exec(adapt(RECOVERY_PATTERN), ns)
    m.start_monitoring("agent-rt")
    m.record_heartbeat("agent-rt")
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        if any("restarted successfully" in r.getMessage() for r in caplog.records):
            break
        time.sleep(0.01)
    assert [r.getMessage() for r in caplog.records if r.name == "guide"] == [
        "Agent agent-rt failed, attempting restart...", "Agent agent-rt restarted successfully"]
    assert "agent-rt" in m.monitoring_agents and m.get_heartbeat_history("agent-rt") == []


DASHBOARD = '''
def print_health_dashboard():
    """Display real-time health dashboard."""
    stats = monitor.get_monitoring_stats()

    print("\\n" + "="*50)
    print("AGENT HEALTH DASHBOARD")
    print("="*50)

    for agent_id in coordinator.agent_registry.keys():
        try:
            health = monitor.check_agent_health(agent_id)
            icon = {
                HealthState.HEALTHY: "✅",
                HealthState.DEGRADED: "⚠️",
                HealthState.CRITICAL: "🔴",
                HealthState.FAILED: "❌"
            }[health]

            print(f"{icon} {agent_id}: {health.value.upper()}")
        except ValueError:
            print(f"❓ {agent_id}: NOT MONITORED")

    print("="*50)
    print(f"Total: {stats['total_agents']} agents")
    print(f"Healthy: {stats['health_distribution']['healthy']}")
    print(f"Issues: {stats['health_distribution']['degraded'] + stats['health_distribution']['critical']}")
    print(f"Failed: {stats['health_distribution']['failed']}")
    print("="*50 + "\\n")
'''  # noqa: E501 -- the guide's code, verbatim


def test_health_dashboard(guide, vclock, capsys):
    ns = namespace()
    exec(adapt(QUICK_START), ns)
    m = ns["monitor"]
    coord = Coordinator()
    for a in ("agent-001", "agent-x", "ghost"):
        coord.register_agent(a, {})
    m.start_monitoring("agent-x")
    vclock.advance(6)
    m.record_heartbeat("agent-x")
    ns["coordinator"] = coord
    exec(adapt(DASHBOARD), ns)
    capsys.readouterr()
    ns["print_health_dashboard"]()
    out = capsys.readouterr().out
    assert "⚠️ agent-001: DEGRADED" in out
    assert "✅ agent-x: HEALTHY" in out
    assert "❓ ghost: NOT MONITORED" in out
    assert "Total: 2 agents" in out and "Issues: 1" in out and "Failed: 0" in out


THROTTLING = '''
class ThrottledAlerts:
    """Prevent alert spam by throttling repeated alerts."""

    def __init__(self, cooldown_seconds=60):
        self.last_alert_time = {}
        self.cooldown = cooldown_seconds

    def should_alert(self, agent_id: str, state: HealthState) -> bool:
        """Check if alert should be sent."""
        key = f"{agent_id}:{state.value}"
        current_time = time.time()

        if key not in self.last_alert_time:
            self.last_alert_time[key] = current_time
            return True

        elapsed = current_time - self.last_alert_time[key]
        if elapsed > self.cooldown:
            self.last_alert_time[key] = current_time
            return True

        return False

throttler = ThrottledAlerts(cooldown_seconds=300)  # 5 min cooldown

def on_critical_throttled(agent_id: str, state: HealthState, details: dict):
    """Alert only if not recently alerted."""
    if throttler.should_alert(agent_id, state):
        send_alert_email(agent_id, state, details)
    else:
        logger.debug(f"Skipping throttled alert for {agent_id}")

monitor.configure_alerts(
    on_critical=True,
    critical_callback=on_critical_throttled
)
'''


def test_alert_throttling(guide, vclock):
    ns = namespace()
    exec(adapt(QUICK_START), ns)
    m = ns["monitor"]
    sent = []
    ns["send_alert_email"] = lambda a, s, d: sent.append((a, s, d["current_state"]))
    exec(adapt(THROTTLING), ns)
    vclock.advance(11)
    m.advance()
    m.record_heartbeat("agent-001")            # recovers
    vclock.advance(11)
    m.advance()                                 # CRITICAL again: throttled (real-time cooldown)
    assert sent == [("agent-001", C, "critical")]


TROUBLESHOOT_THREAD = '''
# Check thread status
stats = monitor.get_monitoring_stats()
if not stats["monitoring_thread_alive"]:
    logger.error("Background monitoring thread died!")
    monitor._start_background_monitoring()
'''


def test_troubleshooting_thread(guide, caplog):
    guide["clock"] = None
    ns = namespace()
    exec(adapt(QUICK_START), ns)
    m = ns["monitor"]
    exec(adapt(TROUBLESHOOT_THREAD), ns)                  # alive: nothing to do
    assert not [r for r in caplog.records if r.name == "guide"]
    m.shutdown()
    exec(adapt(TROUBLESHOOT_THREAD), ns)
    assert [r.getMessage() for r in caplog.records if r.name == "guide"] == [
        "Background monitoring thread died!"]
    assert m.get_monitoring_stats()["monitoring_thread_alive"] is True
    assert m.monitoring_thread.name == "HeartbeatMonitor-Daemon"


TROUBLESHOOT_MEMORY = '''
# Reduce history size
monitor = HeartbeatMonitor(
    history_size=50,  # Reduce from default 100
    interval_ms=5000
)

# Or periodically clear history for inactive agents
for agent_id in list(monitor.heartbeat_history.keys()):
    if agent_id not in coordinator.agent_registry:
        del monitor.heartbeat_history[agent_id]
'''


def test_troubleshooting_memory(guide):
    ns = namespace(HeartbeatMonitor=moai_flow_fast.monitoring.HeartbeatMonitor)
    coord = Coordinator()
    coord.register_agent("keep", {})
    ns["coordinator"] = coord
    exec(adapt(TROUBLESHOOT_MEMORY), ns)
    m = ns["monitor"]
    assert m.history_size == 50 and m.default_interval_ms == 5000
    for a in ("keep", "drop"):
        m.start_monitoring(a)
        for _ in range(60):
            m.record_heartbeat(a)
    assert len(m.get_heartbeat_history("keep")) == 50
    m.stop_monitoring("drop")
    loop = TROUBLESHOOT_MEMORY.split("# Or periodically clear history for inactive agents")[1]
    exec(loop, ns)
    assert list(m.heartbeat_history.keys()) == ["keep"]
    assert m.get_monitoring_stats()["total_heartbeats"] == 50


FALSE_POSITIVES = '''
# Increase interval or failure threshold
monitor.start_monitoring(
    agent_id,
    interval_ms=10000,      # Increase from 5000
    failure_threshold=5     # Increase from 3
)

# Or ensure heartbeats are recorded consistently
def process_task(agent_id):
    monitor.record_heartbeat(agent_id)  # Start
    result = do_work()
    monitor.record_heartbeat(agent_id)  # End
    return result
'''


def test_troubleshooting_false_positives(guide, vclock):
    ns = namespace()
    exec(adapt(QUICK_START), ns)
    m = ns["monitor"]
    ns.update(agent_id="slow-agent", do_work=lambda: vclock.advance(9) or 42)
    exec(adapt(FALSE_POSITIVES), ns)
    assert m.monitoring_agents["slow-agent"]["interval_ms"] == 10000
    assert ns["process_task"]("slow-agent") == 42
    assert len(m.get_heartbeat_history("slow-agent")) == 2
    vclock.advance(9.999)
    assert m.check_agent_health("slow-agent") is H
