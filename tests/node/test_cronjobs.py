"""The local node's CronJob controller: its decisions (pure) and CronJobs running for real.

The pure tests pin the decisions to kube's CronJob controller (v2): which schedule is due,
missed schedules and `startingDeadlineSeconds`, Forbid/Replace, history selection, the Jobs
it builds. The real tests run a node with a fast clock (60: one cron minute per second)
against an API server of their own — a second cluster, so the session node's own CronJob
controller (normal clock) never competes for the same CronJobs.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kubeloop.local.node.cronjobs import (
    INSTANTIATE_ANNOTATION,
    SCHEDULED_TIMESTAMP_ANNOTATION,
    Action,
    CronJobSpecView,
    DelayingQueue,
    Missed,
    ScheduleProblem,
    create_job_from_cronjob,
    creation_in_node_time,
    desired_job,
    job_name,
    jobs_to_prune,
    load_time_zone,
    manual_job,
    most_recent_schedule_time,
    next_requeue,
    node_time_of,
    parse_go_duration,
    parse_schedule,
    reconcile_active,
    schedule_decision,
    status_patch,
)
from kubeloop.local.node.settings import Clock
from tests.node.conftest import KubeAPI, node_ready, start_node_process, wait_for

T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(minutes: float = 0, seconds: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def sched(expression: str, zone: str | None = None) -> Any:
    schedule, _ = parse_schedule(expression, zone)
    return schedule


# --- schedules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("expression", "after", "expected"), [
    ("*/5 * * * *", at(0, 30), at(5)),
    ("*/5 * * * *", at(5), at(10)),  # strictly after, like robfig/cron's Next
    ("@hourly", at(1), at(60)),
    ("@daily", at(1), datetime(2024, 3, 2, tzinfo=UTC)),
    ("@midnight", at(1), datetime(2024, 3, 2, tzinfo=UTC)),
    ("@weekly", at(1), datetime(2024, 3, 3, tzinfo=UTC)),  # Sunday
    ("@monthly", at(1), datetime(2024, 4, 1, tzinfo=UTC)),
    ("@yearly", at(1), datetime(2025, 1, 1, tzinfo=UTC)),
    ("0 0 * * MON", at(1), datetime(2024, 3, 4, tzinfo=UTC)),
    ("@every 90s", at(0, 10.5), at(1, 40)),  # constant delay, sub-second part dropped
])
def test_next_activation(expression: str, after: datetime, expected: datetime) -> None:
    assert sched(expression).next_after(after) == expected


def test_time_zone_moves_the_schedule() -> None:
    tokyo = sched("0 9 * * *", "Asia/Tokyo")  # 09:00 in Tokyo is 00:00 UTC
    assert tokyo.next_after(at(1)) == datetime(2024, 3, 2, 0, 0, tzinfo=UTC)
    # New York springs forward on 2024-03-10: 09:00 EDT is 13:00 UTC, the day before 14:00 UTC.
    new_york = sched("0 9 * * *", "America/New_York")
    assert new_york.next_after(datetime(2024, 3, 9, 15, tzinfo=UTC)) == datetime(2024, 3, 10, 13, tzinfo=UTC)


def test_unknown_time_zone_is_refused_with_kubes_reason() -> None:
    with pytest.raises(ScheduleProblem) as caught:
        parse_schedule("* * * * *", "Mars/Olympus_Mons")
    assert caught.value.reason == "UnknownTimeZone"
    assert caught.value.message == 'invalid timeZone: "Mars/Olympus_Mons": unknown time zone Mars/Olympus_Mons'
    with pytest.raises(ScheduleProblem):
        load_time_zone("Local")  # kube requires an explicit zone


@pytest.mark.parametrize(("expression", "detail"), [
    ("* * * * * *", "expected exactly 5 fields, found 6"),
    ("@fortnightly", "unrecognized descriptor: @fortnightly"),
    ("61 * * * *", "61"),
    ("", "empty spec string"),
    ("@every 5x", "failed to parse duration"),
])
def test_unparseable_schedules(expression: str, detail: str) -> None:
    with pytest.raises(ScheduleProblem) as caught:
        parse_schedule(expression, None)
    assert caught.value.reason == "UnparseableSchedule"
    assert caught.value.message.startswith(f'unparseable schedule: "{expression}" : ')
    assert detail in caught.value.message


def test_tz_prefix_works_with_kubes_warning() -> None:
    schedule, events = parse_schedule("CRON_TZ=Asia/Tokyo 0 9 * * *", None)
    assert schedule.next_after(at(1)) == datetime(2024, 3, 2, 0, 0, tzinfo=UTC)
    assert [e.reason for e in events] == ["UnsupportedSchedule"]
    assert events[0].type == "Warning"


def test_go_durations() -> None:
    assert parse_go_duration("1h30m") == timedelta(minutes=90)
    assert parse_go_duration("1.5m") == timedelta(seconds=90)
    assert parse_go_duration("250ms") == timedelta(milliseconds=250)
    with pytest.raises(ValueError, match="invalid duration"):
        parse_go_duration("5")


# --- which schedule is due -----------------------------------------------------------------------


def test_nothing_due_before_the_first_activation() -> None:
    recent = most_recent_schedule_time(sched("*/5 * * * *"), last_schedule_time=None, created=at(0, 10),
                                       now=at(4, 59), starting_deadline_seconds=None)
    assert recent.most_recent is None
    assert recent.missed is Missed.NONE


def test_one_activation_due() -> None:
    recent = most_recent_schedule_time(sched("*/5 * * * *"), last_schedule_time=None, created=at(0, 10),
                                       now=at(5, 1), starting_deadline_seconds=None)
    assert recent.most_recent == at(5)
    assert recent.missed is Missed.NONE


def test_missed_activations_yield_only_the_most_recent() -> None:
    recent = most_recent_schedule_time(sched("*/5 * * * *"), last_schedule_time=at(5), created=at(0),
                                       now=at(31), starting_deadline_seconds=None)
    assert recent.most_recent == at(30)
    assert recent.missed is Missed.FEW


def test_irregular_schedule_finds_the_most_recent() -> None:
    # Weekdays 06:30, 10:30, 14:30: the interval estimate is wrong across nights; the walk is not.
    schedule = sched("30 6-16/4 * * 1-5")
    recent = most_recent_schedule_time(schedule, last_schedule_time=datetime(2024, 3, 1, 10, 30, tzinfo=UTC),
                                       created=datetime(2024, 2, 1, tzinfo=UTC),
                                       now=datetime(2024, 3, 4, 11, 0, tzinfo=UTC), starting_deadline_seconds=None)
    assert recent.most_recent == datetime(2024, 3, 4, 10, 30, tzinfo=UTC)


def test_more_than_100_missed_is_many_but_still_runs_the_latest() -> None:
    recent = most_recent_schedule_time(sched("* * * * *"), last_schedule_time=None, created=at(0),
                                       now=at(101, 30), starting_deadline_seconds=None)
    assert recent.missed is Missed.MANY
    assert recent.most_recent == at(101)
    decision = schedule_decision(sched("* * * * *"), cronjob_name="cj", created=at(0), last_schedule_time=None,
                                 starting_deadline_seconds=None, concurrency_policy="Allow", active_names=[],
                                 now=at(101, 30))
    assert decision.action is Action.START
    assert [e.reason for e in decision.events] == ["TooManyMissedTimes"]


def test_starting_deadline_limits_how_far_back_to_look() -> None:
    # Down for 3 hours; with a 200 s deadline only the last 200 s count: no pile of missed runs.
    recent = most_recent_schedule_time(sched("* * * * *"), last_schedule_time=at(0), created=at(0),
                                       now=at(180, 30), starting_deadline_seconds=200)
    assert recent.earliest == at(180, 30 - 200)
    assert recent.missed is Missed.FEW
    assert recent.most_recent == at(180)
    # An hourly schedule whose activation is older than the deadline is not started at all.
    decision = schedule_decision(sched("@hourly"), cronjob_name="cj", created=at(-10), last_schedule_time=None,
                                 starting_deadline_seconds=60, concurrency_policy="Allow", active_names=[],
                                 now=at(5))
    assert decision.action is Action.WAIT
    assert decision.requeue_after == at(60) + timedelta(milliseconds=100) - at(5)


def test_impossible_schedule_is_invalid() -> None:
    from kubeloop.local.node.cronjobs import InvalidScheduleError

    with pytest.raises(InvalidScheduleError, match="less than 1 second"):
        most_recent_schedule_time(sched("0 0 31 2 *"), last_schedule_time=None, created=at(0), now=at(10),
                                  starting_deadline_seconds=None)


def test_requeue_aims_just_after_the_next_activation() -> None:
    assert next_requeue(sched("*/5 * * * *"), last_schedule_time=at(5), created=at(0), now=at(7)) == \
        timedelta(minutes=3, milliseconds=100)
    # A missed activation is due now: the requeue still aims at the one after it.
    assert next_requeue(sched("*/5 * * * *"), last_schedule_time=at(0), created=at(0), now=at(12)) == \
        timedelta(minutes=3, milliseconds=100)


# --- concurrency -----------------------------------------------------------------------------------


def decide(policy: str, active: list[str], last: datetime | None = None) -> Any:
    return schedule_decision(sched("* * * * *"), cronjob_name="nightly", created=at(0), last_schedule_time=last,
                             starting_deadline_seconds=None, concurrency_policy=policy, active_names=active,
                             now=at(1, 5))


def test_due_schedule_starts_a_job_named_after_its_minute() -> None:
    decision = decide("Allow", [])
    assert decision.action is Action.START
    assert decision.scheduled_time == at(1)
    assert job_name("nightly", at(1)) == f"nightly-{int(at(1).timestamp()) // 60}"
    assert decision.requeue_after == timedelta(seconds=55, milliseconds=100)


def test_allow_runs_beside_an_active_job() -> None:
    decision = decide("Allow", ["nightly-1"])
    assert decision.action is Action.START
    assert not decision.replace_active


def test_forbid_skips_while_a_job_is_active() -> None:
    decision = decide("Forbid", ["nightly-1"])
    assert decision.action is Action.FORBIDDEN
    assert [e.reason for e in decision.events] == ["JobAlreadyActive"]
    assert decide("Forbid", []).action is Action.START


def test_replace_starts_after_replacing_the_active_job() -> None:
    decision = decide("Replace", ["nightly-1"])
    assert decision.action is Action.START
    assert decision.replace_active
    assert not decide("Replace", []).replace_active


def test_a_schedule_is_started_once() -> None:
    # Recorded as the last schedule: the search starts after it, so nothing is due.
    assert decide("Allow", [], last=at(1)).action is Action.WAIT
    # Its Job is active though the status write was lost: the Job name is the lock.
    assert decide("Allow", [job_name("nightly", at(1))]).action is Action.ALREADY_PROCESSED


# --- jobs and status -----------------------------------------------------------------------------


def job(name: str, *, finished: str | None = None, start: datetime | None = None,
        completion: datetime | None = None, uid: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if start is not None:
        status["startTime"] = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    if completion is not None:
        status["completionTime"] = completion.strftime("%Y-%m-%dT%H:%M:%SZ")
    if finished:
        status["conditions"] = [{"type": finished, "status": "True"}]
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid or f"uid-{name}"}, "status": status}


def test_history_limits_delete_the_oldest_finished_jobs() -> None:
    jobs = [
        job("ok-3", finished="Complete", start=at(3)), job("ok-1", finished="Complete", start=at(1)),
        job("ok-2", finished="Complete", start=at(2)), job("ok-nostart", finished="Complete"),
        job("bad-1", finished="Failed", start=at(1)), job("bad-2", finished="Failed", start=at(2)),
        job("running", start=at(0)),
    ]
    doomed = [j["metadata"]["name"] for j in jobs_to_prune(jobs, successful_limit=2, failed_limit=1)]
    # Jobs without a start time sort last, so they are kept; running Jobs are never pruned.
    assert doomed == ["ok-1", "ok-2", "bad-1"]
    assert [j["metadata"]["name"] for j in jobs_to_prune(jobs, successful_limit=0, failed_limit=None)] == \
        ["ok-1", "ok-2", "ok-3", "ok-nostart"]


def test_spec_defaults_are_the_api_servers() -> None:
    view = CronJobSpecView.of({"spec": {"schedule": "* * * * *"}})
    assert (view.concurrency_policy, view.suspend, view.successful_jobs_history_limit,
            view.failed_jobs_history_limit, view.starting_deadline_seconds) == ("Allow", False, 3, 1, None)


def test_finished_jobs_leave_active_and_successes_are_recorded() -> None:
    active = [{"name": "a", "uid": "uid-a"}, {"name": "b", "uid": "uid-b"}, {"name": "gone", "uid": "uid-gone"}]
    jobs = [job("a", finished="Complete", completion=at(3)), job("b"),
            job("old", finished="Complete", completion=at(1)), job("failed", finished="Failed", completion=at(9)),
            job("stranger")]
    result = reconcile_active(active, None, jobs)
    assert [r["name"] for r in result.active] == ["b", "gone"]
    assert result.last_successful_time == "2024-03-01T12:03:00Z"  # the newest Complete, never a Failed one
    assert [r["name"] for r in result.unseen] == ["gone"]
    assert [(e.reason, e.message) for e in result.events] == [
        ("SawCompletedJob", "Saw completed job: a, condition: Complete"),
        ("UnexpectedJob", "Saw a job that the controller did not create or forgot: stranger"),
    ]
    # An older success never moves lastSuccessfulTime back.
    assert reconcile_active([], "2024-03-01T12:05:00Z", jobs).last_successful_time == "2024-03-01T12:05:00Z"


def cronjob(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": "ns", "uid": "cj-uid"},
            "spec": {"schedule": "* * * * *",
                     "jobTemplate": {"metadata": {"labels": {"app": "etl"}, "annotations": {"team": "data"}},
                                     "spec": {"backoffLimit": 0, "template": {"spec": {"containers": []}}}},
                     **spec}}


def test_scheduled_job_is_built_like_kubes() -> None:
    built = desired_job(cronjob(), at(1), load_time_zone("Asia/Tokyo"))
    meta = built["metadata"]
    assert meta["name"] == f"nightly-{int(at(1).timestamp()) // 60}"
    assert meta["labels"] == {"app": "etl"}
    assert meta["annotations"] == {"team": "data", SCHEDULED_TIMESTAMP_ANNOTATION: "2024-03-01T21:01:00+09:00"}
    assert meta["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly",
                                        "uid": "cj-uid", "controller": True, "blockOwnerDeletion": True}]
    assert built["spec"] == {"backoffLimit": 0, "template": {"spec": {"containers": []}}}
    utc = desired_job(cronjob(), at(1), UTC)
    assert utc["metadata"]["annotations"][SCHEDULED_TIMESTAMP_ANNOTATION] == "2024-03-01T12:01:00Z"


def test_manual_job_is_built_like_kubectls() -> None:
    named = manual_job(cronjob(), "by-hand")
    assert named["metadata"]["name"] == "by-hand"
    assert named["metadata"]["annotations"] == {INSTANTIATE_ANNOTATION: "manual", "team": "data"}
    # kubectl's owner reference has no blockOwnerDeletion (that would need cronjobs/finalizers rights).
    assert named["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "CronJob",
                                                     "name": "nightly", "uid": "cj-uid", "controller": True}]
    generated = manual_job(cronjob(), None)
    assert "name" not in generated["metadata"]
    assert generated["metadata"]["generateName"] == "nightly-manual-"


def test_status_patch_writes_only_changes_and_drops_empty_active() -> None:
    old = {"active": [{"name": "a"}], "lastScheduleTime": "t1"}
    assert status_patch(old, dict(old)) is None
    assert status_patch(old, {"active": [], "lastScheduleTime": "t2"}) == {"active": None, "lastScheduleTime": "t2"}


def test_creation_time_in_node_time_stays_within_its_second() -> None:
    clock = Clock(speed=60.0)
    wall_now = datetime.now(UTC)
    created_wall = wall_now.replace(microsecond=0) - timedelta(seconds=10)  # second precision, as stored
    earliest = node_time_of(clock, created_wall)
    # Seen long after (an object older than the controller): the end of the creation second.
    # (node_time_of reads the clocks, so two calls differ by the microseconds between them.)
    end = creation_in_node_time(clock, created_wall, clock.now())
    assert abs(end - (earliest + timedelta(seconds=60))) < timedelta(seconds=1)
    # Seen within the second: the moment it was seen, not a minute-wide guess.
    seen = earliest + timedelta(seconds=12)
    assert creation_in_node_time(clock, created_wall, seen) == seen
    assert creation_in_node_time(clock, None, seen) == seen


async def test_delaying_queue_returns_keys_when_due_in_node_time() -> None:
    queue = DelayingQueue(Clock(speed=600.0))  # ten node minutes per real second
    queue.add(("ns", "later"), timedelta(seconds=60))
    queue.add(("ns", "sooner"), timedelta(seconds=30))
    queue.add(("ns", "later"), timedelta(seconds=120))  # a later due time never delays a queued key
    started = queue.clock.now()
    assert await asyncio.wait_for(queue.get(), 10) == ("ns", "sooner")
    assert await asyncio.wait_for(queue.get(), 10) == ("ns", "later")
    assert queue.clock.now() - started >= timedelta(seconds=60)


# --- CronJobs running for real on a fast-clock node ------------------------------------------------

SPEED = 60.0  # one cron minute per real second
FAST_NODE = "kubeloop-fast"
JOBS_IMAGE = "ghcr.io/kubeloop/jobs:test"


@pytest.fixture(scope="module")
def fast_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:
    """An API server of its own and a node whose clock runs 60 times faster."""
    from kubeloop.local.apiserver import RunningAPIServer

    root = tmp_path_factory.mktemp("fast-cluster")
    with RunningAPIServer(kubeconfig_path=root / "kubeconfig") as server:
        api = KubeAPI(server.url)
        process = start_node_process(Path(server.kubeconfig_path), root / "state", "--node-name", FAST_NODE,
                                     "--clock-speed", str(SPEED))
        try:
            def ready() -> bool:
                if not process.alive():
                    raise AssertionError(f"the fast node exited; last log lines:\n{process.log_tail()}")
                return node_ready(api, FAST_NODE)

            wait_for(ready, what="the fast node to be Ready", interval=0.05)
            yield api
        finally:
            process.stop(grace=30)
            print(f"fast node log: {process.log_path}\n{process.log_tail(60)}")


@pytest.fixture()
def ns(fast_cluster: KubeAPI) -> Iterator[str]:
    name = f"cron-{uuid.uuid4().hex[:8]}"
    fast_cluster.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    fast_cluster.delete(f"/api/v1/namespaces/{name}")


def cronjob_manifest(name: str, script: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": "* * * * *", **spec, "jobTemplate": {
                "metadata": {"labels": {"suite": "cron"}},
                "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
                    {"name": "main", "image": JOBS_IMAGE, "command": ["python", "-c", script]}]}}}}}}


def create_cronjob(api: KubeAPI, ns: str, name: str, script: str = "print('tick')", **spec: Any) -> dict[str, Any]:
    return api.create(f"/apis/batch/v1/namespaces/{ns}/cronjobs", cronjob_manifest(name, script, **spec))


def jobs_of(api: KubeAPI, ns: str, cronjob_name: str) -> list[dict[str, Any]]:
    return [j for j in api.items(f"/apis/batch/v1/namespaces/{ns}/jobs")
            if any(r.get("kind") == "CronJob" and r.get("name") == cronjob_name
                   for r in j["metadata"].get("ownerReferences") or [])]


def finished(job_: dict[str, Any]) -> str | None:
    for condition in job_.get("status", {}).get("conditions") or []:
        if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
            return str(condition["type"])
    return None


def cronjob_status(api: KubeAPI, ns: str, name: str) -> dict[str, Any]:
    return dict((api.get(f"/apis/batch/v1/namespaces/{ns}/cronjobs/{name}") or {}).get("status") or {})


def events_for(api: KubeAPI, ns: str, name: str) -> list[dict[str, Any]]:
    return [e for e in api.items(f"/api/v1/namespaces/{ns}/events") if e["involvedObject"]["name"] == name]


def test_cronjob_runs_jobs_records_times_and_prunes_history(fast_cluster: KubeAPI, ns: str) -> None:
    api = fast_cluster
    create_cronjob(api, ns, "tick", successfulJobsHistoryLimit=2)
    seen: set[str] = set()

    def four_jobs_seen() -> bool:
        seen.update(j["metadata"]["name"] for j in jobs_of(api, ns, "tick"))
        return len(seen) >= 4

    wait_for(four_jobs_seen, what="four scheduled Jobs")
    status = wait_for(lambda: (s := cronjob_status(api, ns, "tick")).get("lastSuccessfulTime") and s,
                      what="lastSuccessfulTime")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:00Z", status["lastScheduleTime"])
    for existing in jobs_of(api, ns, "tick"):
        # Named after the scheduled minute, which the annotation states in full.
        minutes = int(existing["metadata"]["name"].removeprefix("tick-"))
        assert existing["metadata"]["annotations"][SCHEDULED_TIMESTAMP_ANNOTATION] == \
            datetime.fromtimestamp(minutes * 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert existing["metadata"]["labels"]["suite"] == "cron"
        owner = existing["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("CronJob", "tick", True)
    # History: with five runs made, only the two newest successful Jobs are kept.
    wait_for(lambda: four_jobs_seen() and len(seen) >= 5, what="a fifth Job")
    def pruned() -> list[str] | None:
        jobs = jobs_of(api, ns, "tick")  # one listing: `seen` and `done` agree
        seen.update(j["metadata"]["name"] for j in jobs)
        done = [j["metadata"]["name"] for j in jobs if finished(j) == "Complete"]
        return done if 1 <= len(done) <= 2 else None

    kept = wait_for(pruned, what="history pruned to two successful Jobs")
    newest = sorted(seen, key=lambda n: int(n.removeprefix("tick-")))[-3:]  # the newest may still run
    assert set(kept) <= set(newest), (kept, newest)
    assert any(e["reason"] == "SuccessfulDelete" for e in events_for(api, ns, "tick"))
    assert any(e["reason"] == "SawCompletedJob" for e in events_for(api, ns, "tick"))


def test_forbid_never_runs_two_jobs_at_once(fast_cluster: KubeAPI, ns: str) -> None:
    api = fast_cluster
    # Each run lasts about 1.6 real seconds: at least one schedule comes due while it runs.
    create_cronjob(api, ns, "slow", "import time; time.sleep(1.6)", concurrencyPolicy="Forbid")
    completed: set[str] = set()
    most_active = 0

    def two_completed() -> bool:
        nonlocal most_active
        jobs = jobs_of(api, ns, "slow")
        running = [j for j in jobs if not finished(j)]
        most_active = max(most_active, len(running), len(cronjob_status(api, ns, "slow").get("active") or []))
        completed.update(j["metadata"]["name"] for j in jobs if finished(j) == "Complete")
        return len(completed) >= 2

    wait_for(two_completed, what="two runs of the slow CronJob", interval=0.05)
    assert most_active == 1
    assert any(e["reason"] == "JobAlreadyActive" for e in events_for(api, ns, "slow"))


def test_replace_deletes_the_running_job(fast_cluster: KubeAPI, ns: str) -> None:
    api = fast_cluster
    create_cronjob(api, ns, "swap", "import time; time.sleep(600)", concurrencyPolicy="Replace")
    first = wait_for(lambda: jobs_of(api, ns, "swap"), what="the first Job")[0]["metadata"]["name"]
    wait_for(lambda: first not in {j["metadata"]["name"] for j in jobs_of(api, ns, "swap")} and
             jobs_of(api, ns, "swap"), what="the first Job replaced by the next one")
    assert any(e["reason"] == "SuccessfulDelete" and first in e["message"] for e in events_for(api, ns, "swap"))
    assert len(cronjob_status(api, ns, "swap").get("active") or []) == 1


def test_suspend_stops_scheduling_and_resume_runs_the_missed_schedule(fast_cluster: KubeAPI, ns: str) -> None:
    api = fast_cluster
    create_cronjob(api, ns, "paused", suspend=True)
    # A witness CronJob measures node time: two of its runs mean two cron minutes have passed.
    create_cronjob(api, ns, "witness")
    wait_for(lambda: len(jobs_of(api, ns, "witness")) >= 2, what="two runs of the witness CronJob")
    assert jobs_of(api, ns, "paused") == []
    assert "lastScheduleTime" not in cronjob_status(api, ns, "paused")
    api.patch(f"/apis/batch/v1/namespaces/{ns}/cronjobs/paused", {"spec": {"suspend": False}})
    wait_for(lambda: jobs_of(api, ns, "paused"), what="a Job once resumed")


def test_unknown_time_zone_warns_and_schedules_nothing(fast_cluster: KubeAPI, ns: str) -> None:
    api = fast_cluster
    create_cronjob(api, ns, "lost", timeZone="Mars/Olympus_Mons")
    create_cronjob(api, ns, "witness")
    wait_for(lambda: len(jobs_of(api, ns, "witness")) >= 2, what="two runs of the witness CronJob")
    assert jobs_of(api, ns, "lost") == []
    warning = wait_for(lambda: [e for e in events_for(api, ns, "lost") if e["reason"] == "UnknownTimeZone"],
                       what="the UnknownTimeZone event")[0]
    assert warning["type"] == "Warning"
    assert warning["message"] == 'invalid timeZone: "Mars/Olympus_Mons": unknown time zone Mars/Olympus_Mons'


def test_create_job_from_cronjob_runs_it_now(fast_cluster: KubeAPI, ns: str) -> None:
    from kubeloop.local.node.client import NodeClient

    api = fast_cluster
    create_cronjob(api, ns, "manual", "print('by hand')", suspend=True)

    async def run_now() -> tuple[dict[str, Any], dict[str, Any]]:
        async with NodeClient(api.url) as client:
            named = await create_job_from_cronjob(client, ns, "manual", "manual-now")
            generated = await create_job_from_cronjob(client, ns, "manual")
            with pytest.raises(LookupError):
                await create_job_from_cronjob(client, ns, "no-such-cronjob")
            return named, generated

    named, generated = asyncio.run(run_now())
    assert named["metadata"]["name"] == "manual-now"
    assert named["metadata"]["annotations"][INSTANTIATE_ANNOTATION] == "manual"
    assert generated["metadata"]["name"].startswith("manual-manual-")
    done = wait_for(lambda: (j := api.get(f"/apis/batch/v1/namespaces/{ns}/jobs/manual-now")) and finished(j) and j,
                    what="the manual Job to finish")
    assert finished(done) == "Complete"
    # The controller counts it (lastSuccessfulTime) though it did not create it, as kube does.
    wait_for(lambda: cronjob_status(api, ns, "manual").get("lastSuccessfulTime"), what="lastSuccessfulTime")
    assert "lastScheduleTime" not in cronjob_status(api, ns, "manual")
