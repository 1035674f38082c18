"""CronJobs (batch/v1): the local node's copy of kube-controller-manager's CronJob controller (v2).

The decisions follow `pkg/controller/cronjob` of Kubernetes, so that what a user learns locally
holds on a real cluster:

- schedules are robfig/cron "standard" specs: five fields, the `@yearly`/`@annually`/`@monthly`/
  `@weekly`/`@daily`/`@midnight`/`@hourly` macros and `@every <duration>`; `spec.timeZone` is an
  IANA zone (a `TZ=`/`CRON_TZ=` prefix in the schedule also works, with the same
  `UnsupportedSchedule` warning Event kube emits). An unknown zone, an unparseable or an impossible
  schedule is reported as a Warning Event on the CronJob (`UnknownTimeZone`,
  `UnparseableSchedule`, `InvalidSchedule`) and nothing is scheduled until the spec changes —
  exactly what kube does (CronJob status has no conditions);
- the schedule that is due is the most recent one since `status.lastScheduleTime` (else the
  creation time), bounded by `startingDeadlineSeconds`; missed ones in between are not
  replayed; more than 100 missed ones only add a `TooManyMissedTimes` warning; a due schedule
  older than `startingDeadlineSeconds` is skipped with `MissSchedule`;
- Jobs are named `<cronjob>-<scheduled time in minutes since the epoch>` (the name is the lock
  that prevents a second Job for one schedule), carry the template's labels and annotations,
  the `batch.kubernetes.io/cronjob-scheduled-timestamp` annotation and a controller
  ownerReference; `concurrencyPolicy` Allow / Forbid (`JobAlreadyActive`) / Replace (the
  active Jobs are deleted first); `suspend` stops new Jobs, never running ones;
- finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit` are deleted,
  oldest start time first; `status.active` holds object references of unfinished Jobs and
  `lastSuccessfulTime` the newest completion time of a succeeded Job.

All times are node time (`NodeSettings.clock`): with a fast clock (speed 60 runs one cron
minute per second) schedules fire in seconds. Timestamps the API server wrote (the CronJob's
creationTimestamp) are wall time and are converted to node time before use.

Deliberately different from a real cluster: the API server does not default built-in kinds, so
the defaults kube's API server would apply (`concurrencyPolicy: Allow`, `suspend: false`,
`successfulJobsHistoryLimit: 3`, `failedJobsHistoryLimit: 1`) are applied here when the fields
are absent; schedules without a time zone use UTC (kube uses kube-controller-manager's zone,
UTC in most clusters).

`create_job_from_cronjob` does what `kubectl create job --from=cronjob/X` does (kubectl's typed
create sends protobuf, which the local API server cannot parse).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import enum
import logging
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp
from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

from kubeloop.local.node.client import ApiError, Informer, NodeClient, ObjectKey, object_key, resource_path
from kubeloop.local.node.settings import Clock, NodeSettings

log = logging.getLogger(__name__)

SCHEDULED_TIMESTAMP_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
INSTANTIATE_ANNOTATION = "cronjob.kubernetes.io/instantiate"
COMPONENT = "cronjob-controller"

DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT = 3
DEFAULT_FAILED_JOBS_HISTORY_LIMIT = 1
TOO_MANY_MISSED = 100  # kube's "more than 80, less than lots"
# Requeue a little after the next schedule, as kube does, so that clock skew never makes the
# controller wake up just before the schedule and find nothing due.
NEXT_SCHEDULE_DELTA = timedelta(milliseconds=100)

# Event reasons (those of kube's CronJob controller).
REASON_UNKNOWN_TIME_ZONE = "UnknownTimeZone"
REASON_UNPARSEABLE_SCHEDULE = "UnparseableSchedule"
REASON_UNSUPPORTED_SCHEDULE = "UnsupportedSchedule"
REASON_INVALID_SCHEDULE = "InvalidSchedule"
REASON_TOO_MANY_MISSED = "TooManyMissedTimes"
REASON_MISS_SCHEDULE = "MissSchedule"
REASON_JOB_ALREADY_ACTIVE = "JobAlreadyActive"
REASON_SUCCESSFUL_CREATE = "SuccessfulCreate"
REASON_FAILED_CREATE = "FailedCreate"
REASON_SUCCESSFUL_DELETE = "SuccessfulDelete"
REASON_FAILED_DELETE = "FailedDelete"
REASON_SAW_COMPLETED_JOB = "SawCompletedJob"
REASON_UNEXPECTED_JOB = "UnexpectedJob"
REASON_MISSING_JOB = "MissingJob"

NORMAL = "Normal"
WARNING = "Warning"

CRONJOBS = resource_path("batch/v1", "cronjobs")
JOBS = resource_path("batch/v1", "jobs")

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_GO_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


# --- times ---------------------------------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """RFC 3339 with second precision in UTC, as metav1.Time serializes."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def node_time_of(clock: Clock, wall: datetime) -> datetime:
    """Node time of a wall-clock instant (such as a creationTimestamp the API server wrote).

    With speed 1 this is the instant itself; with a fast clock, node time ran `speed` times
    faster since then.
    """
    wall_now = datetime.fromtimestamp(time.time(), UTC)
    return clock.now() - (wall_now - wall) * clock.speed


def creation_in_node_time(clock: Clock, created_wall: datetime | None, first_seen: datetime) -> datetime:
    """When an object was created, in node time.

    creationTimestamp has second precision: the creation happened within the second after it,
    which a fast clock stretches to `speed` node seconds (a whole cron minute at speed 60).
    Reading the start of that window would let a schedule from before the object existed
    fire at once; so the moment this controller first saw the object (a few milliseconds
    after its creation) is used, kept inside the window (for objects older than the
    controller, that is the window's end).
    """
    if created_wall is None:
        return first_seen
    earliest = node_time_of(clock, created_wall)
    latest = node_time_of(clock, created_wall + timedelta(seconds=1))
    return min(max(first_seen, earliest), latest)


def scheduled_timestamp(moment: datetime, zone: tzinfo) -> str:
    """The value of the scheduled-timestamp annotation: RFC 3339 in the CronJob's time zone."""
    local = moment.astimezone(zone).replace(microsecond=0)
    text = local.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# --- schedules (pure) ----------------------------------------------------------------------------


class ScheduleProblem(ValueError):
    """A schedule or time zone that cannot be used; `reason` is the Event reason kube gives."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class InvalidScheduleError(ValueError):
    """A schedule that parses but never (or too often) fires, such as `0 0 31 2 *`."""


def load_time_zone(name: str) -> tzinfo:
    """An IANA zone; raises ScheduleProblem(UnknownTimeZone) as kube's time.LoadLocation fails."""
    if name in ("", "UTC"):
        return UTC
    try:
        if name == "Local" or name.startswith("/") or ".." in name:
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleProblem(REASON_UNKNOWN_TIME_ZONE,
                              f"invalid timeZone: {_go_quote(name)}: unknown time zone {name}") from None


def parse_go_duration(text: str) -> timedelta:
    """A Go `time.ParseDuration` string (`90s`, `1h30m`, `1.5m`)."""
    position, total = 0, 0.0
    for match in _GO_DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _GO_DURATION_UNITS[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise ValueError(f"time: invalid duration {_go_quote(text)}")
    return timedelta(seconds=total)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed schedule: five cron fields (macros expanded) or a constant delay, in a zone."""

    fields: str | None
    every: timedelta | None = None
    zone: tzinfo = UTC

    def next_after(self, moment: datetime) -> datetime:
        """The first activation strictly after `moment` (UTC), like robfig/cron's Next."""
        if self.every is not None:
            return moment.replace(microsecond=0) + self.every
        assert self.fields is not None
        try:
            upcoming = croniter(self.fields, moment.astimezone(self.zone)).get_next(datetime)
        except CroniterBadDateError:
            raise InvalidScheduleError("time difference between two schedules is less than 1 second") from None
        return upcoming.astimezone(UTC)


def parse_schedule(schedule: str, time_zone: str | None) -> tuple[CronSchedule, list[CronEvent]]:
    """Parse `spec.schedule` as kube does (formatSchedule + cron.ParseStandard).

    Returns the schedule and the warnings kube records while parsing; raises ScheduleProblem
    for a zone or schedule kube cannot use.
    """
    events: list[CronEvent] = []
    spec = schedule.strip()
    zone: tzinfo = UTC
    if "TZ" in schedule:
        events.append(CronEvent(WARNING, REASON_UNSUPPORTED_SCHEDULE,
                                f"CRON_TZ or TZ used in schedule {_go_quote(schedule)} is not officially supported, "
                                "see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ "
                                "for more details"))
        if spec.startswith(("TZ=", "CRON_TZ=")):
            prefix, _, spec = spec.partition(" ")
            name = prefix.split("=", 1)[1]
            try:
                zone = load_time_zone(name)
            except ScheduleProblem:
                raise ScheduleProblem(REASON_UNPARSEABLE_SCHEDULE, _unparseable(
                    schedule, f"provided bad location {name}: unknown time zone {name}")) from None
            spec = spec.strip()
    elif time_zone is not None:
        zone = load_time_zone(time_zone)
    if not spec:
        raise ScheduleProblem(REASON_UNPARSEABLE_SCHEDULE, _unparseable(schedule, "empty spec string"))
    if spec.startswith("@"):
        if spec.startswith("@every "):
            try:
                delay = parse_go_duration(spec[len("@every "):].strip())
            except ValueError as exc:
                raise ScheduleProblem(REASON_UNPARSEABLE_SCHEDULE, _unparseable(
                    schedule, f"failed to parse duration {spec}: {exc}")) from None
            # robfig/cron: at least one second, whole seconds only.
            seconds = max(1, int(delay.total_seconds()))
            return CronSchedule(fields=None, every=timedelta(seconds=seconds), zone=zone), events
        if spec not in _MACROS:
            raise ScheduleProblem(REASON_UNPARSEABLE_SCHEDULE, _unparseable(schedule, f"unrecognized descriptor: {spec}"))
        spec = _MACROS[spec]
    fields = spec.split()
    if len(fields) != 5:
        raise ScheduleProblem(REASON_UNPARSEABLE_SCHEDULE, _unparseable(
            schedule, f"expected exactly 5 fields, found {len(fields)}: {spec}"))
    expression = " ".join(fields)
    try:
        croniter(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except (CroniterBadCronError, CroniterError, ValueError, KeyError) as exc:
        raise ScheduleProblem(REASON_UNPARSEABLE_SCHEDULE, _unparseable(schedule, str(exc))) from None
    return CronSchedule(fields=expression, zone=zone), events


class Missed(enum.Enum):
    NONE = "none"
    FEW = "few"
    MANY = "many"


@dataclass(frozen=True)
class RecentSchedule:
    """What `mostRecentScheduleTime` of kube returns."""

    earliest: datetime
    most_recent: datetime | None
    missed: Missed


def most_recent_schedule_time(schedule: CronSchedule, *, last_schedule_time: datetime | None,
                              created: datetime, now: datetime, starting_deadline_seconds: int | None,
                              ) -> RecentSchedule:
    """The most recent activation at or before `now` that is not yet handled, kube's way.

    The search starts at the last schedule time (else the creation time), or later when
    `startingDeadlineSeconds` says older activations may no longer start. Missed activations
    are counted approximately from the interval between the next two, as kube does, so that
    a clock far off does not make this enumerate years of minutes. Raises
    InvalidScheduleError for a schedule that fires less than a second apart or never.
    """
    earliest = last_schedule_time or created
    if starting_deadline_seconds is not None:
        deadline = now - timedelta(seconds=starting_deadline_seconds)
        earliest = max(earliest, deadline)
    first = schedule.next_after(earliest)
    second = schedule.next_after(first)
    if now < first:
        return RecentSchedule(earliest, None, Missed.NONE)
    if now < second:
        return RecentSchedule(earliest, first, Missed.NONE)
    interval = round((second - first).total_seconds())
    if interval < 1:
        raise InvalidScheduleError("time difference between two schedules is less than 1 second")
    elapsed = int((now - first).total_seconds())
    missed_count = elapsed // interval + 1
    # Start a little before the estimate so that irregular schedules (30 6-16/4 * * 1-5) are
    # still found, then walk to the last activation not after now.
    potential = first + timedelta(seconds=(missed_count - 2) * interval)
    most_recent: datetime | None = None
    moment = schedule.next_after(potential)
    while moment <= now:
        most_recent = moment
        moment = schedule.next_after(moment)
    missed = Missed.MANY if missed_count > TOO_MANY_MISSED else Missed.FEW
    return RecentSchedule(earliest, most_recent, missed)


def next_requeue(schedule: CronSchedule, *, last_schedule_time: datetime | None, created: datetime,
                 now: datetime) -> timedelta:
    """How long until the controller should look again (kube's nextScheduleTimeDuration)."""
    try:
        recent = most_recent_schedule_time(schedule, last_schedule_time=last_schedule_time, created=created,
                                           now=now, starting_deadline_seconds=None)
        base = recent.most_recent or recent.earliest
    except InvalidScheduleError:
        base = now
    try:
        upcoming = schedule.next_after(base)
    except InvalidScheduleError:
        upcoming = now + timedelta(days=365)
    return upcoming + NEXT_SCHEDULE_DELTA - now


def job_name(cronjob_name: str, scheduled: datetime) -> str:
    """`<cronjob>-<minutes since the epoch>`: deterministic, so one schedule yields one Job."""
    return f"{cronjob_name}-{int(scheduled.timestamp()) // 60}"


# --- jobs and status (pure) ----------------------------------------------------------------------


@dataclass(frozen=True)
class CronEvent:
    """An Event to record on the CronJob."""

    type: str
    reason: str
    message: str


def finished_condition(job: Mapping[str, Any]) -> str | None:
    """"Complete" or "Failed" when the Job has finished, else None."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None


def controller_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def is_owned_by_cronjob(job: Mapping[str, Any], cronjob_name: str) -> bool:
    """kube reconciles every Job whose controller reference names the CronJob."""
    ref = controller_of(job)
    return bool(ref and ref.get("kind") == "CronJob" and ref.get("apiVersion", "").startswith("batch/")
                and ref.get("name") == cronjob_name)


def job_reference(job: Mapping[str, Any]) -> dict[str, Any]:
    """The ObjectReference kept in `status.active`."""
    meta = job["metadata"]
    ref = {"kind": "Job", "namespace": meta.get("namespace"), "name": meta["name"], "uid": meta.get("uid"),
           "apiVersion": "batch/v1", "resourceVersion": meta.get("resourceVersion")}
    return {k: v for k, v in ref.items() if v}


def _start_time_key(job: Mapping[str, Any]) -> tuple[int, datetime, str]:
    start = parse_time((job.get("status") or {}).get("startTime"))
    # Jobs without a start time sort last (they are kept), names break ties: kube's byJobStartTime.
    return (1, datetime.max.replace(tzinfo=UTC), job["metadata"]["name"]) if start is None else (
        0, start, job["metadata"]["name"])


def jobs_to_prune(jobs: Iterable[Mapping[str, Any]], successful_limit: int | None,
                  failed_limit: int | None) -> list[Mapping[str, Any]]:
    """Finished Jobs beyond the history limits, oldest start first (kube's cleanupFinishedJobs)."""
    jobs = list(jobs)
    doomed: list[Mapping[str, Any]] = []
    for kind, limit in (("Complete", successful_limit), ("Failed", failed_limit)):
        if limit is None:
            continue
        finished = sorted((j for j in jobs if finished_condition(j) == kind), key=_start_time_key)
        excess = len(finished) - limit
        if excess > 0:
            doomed.extend(finished[:excess])
    return doomed


@dataclass
class ActiveReconciliation:
    """`status.active` and `lastSuccessfulTime` brought in line with the Jobs that exist."""

    active: list[dict[str, Any]]
    last_successful_time: str | None
    events: list[CronEvent]
    unseen: list[dict[str, Any]]  # active references with no Job in the cache: ask the API server


def reconcile_active(active: Sequence[Mapping[str, Any]], last_successful_time: str | None,
                     jobs: Iterable[Mapping[str, Any]]) -> ActiveReconciliation:
    """Drop finished Jobs from `active`, record the newest success, notice strangers (kube's syncCronJob)."""
    active_list = [dict(ref) for ref in active]
    active_uids = {ref.get("uid") for ref in active_list}
    events: list[CronEvent] = []
    newest = parse_time(last_successful_time)
    newest_text = last_successful_time
    seen: set[str] = set()
    for job in jobs:
        meta = job["metadata"]
        uid = meta.get("uid")
        seen.add(uid)
        finished = finished_condition(job)
        if uid not in active_uids and finished is None:
            events.append(CronEvent(WARNING, REASON_UNEXPECTED_JOB,
                                    f"Saw a job that the controller did not create or forgot: {meta['name']}"))
        elif finished is not None:
            if uid in active_uids:
                active_list = [ref for ref in active_list if ref.get("uid") != uid]
                events.append(CronEvent(NORMAL, REASON_SAW_COMPLETED_JOB,
                                        f"Saw completed job: {meta['name']}, condition: {finished}"))
            completion = (job.get("status") or {}).get("completionTime")
            completed_at = parse_time(completion)
            if finished == "Complete" and completed_at is not None and (newest is None or completed_at > newest):
                newest, newest_text = completed_at, completion
    unseen = [ref for ref in active_list if ref.get("uid") not in seen]
    return ActiveReconciliation(active_list, newest_text, events, unseen)


class Action(enum.Enum):
    WAIT = "wait"  # nothing due yet
    TOO_LATE = "too-late"  # due, but past startingDeadlineSeconds
    ALREADY_PROCESSED = "already-processed"
    FORBIDDEN = "forbidden"  # due, but Forbid and a Job is still running
    START = "start"


@dataclass(frozen=True)
class ScheduleDecision:
    action: Action
    scheduled_time: datetime | None
    requeue_after: timedelta
    events: tuple[CronEvent, ...] = ()
    replace_active: bool = False


def schedule_decision(schedule: CronSchedule, *, cronjob_name: str, created: datetime,
                      last_schedule_time: datetime | None, starting_deadline_seconds: int | None,
                      concurrency_policy: str, active_names: Sequence[str], now: datetime) -> ScheduleDecision:
    """Whether a Job starts now, for which schedule, and when to look again (kube's syncCronJob).

    Raises InvalidScheduleError for a schedule kube calls invalid (the caller records it and
    does not requeue, as kube does).
    """
    recent = most_recent_schedule_time(schedule, last_schedule_time=last_schedule_time, created=created, now=now,
                                       starting_deadline_seconds=starting_deadline_seconds)
    events: list[CronEvent] = []
    scheduled = recent.most_recent

    def requeue(last: datetime | None = last_schedule_time) -> timedelta:
        return next_requeue(schedule, last_schedule_time=last, created=created, now=now)

    if scheduled is None or scheduled > now:
        return ScheduleDecision(Action.WAIT, None, requeue())
    if recent.missed is Missed.MANY:
        events.append(CronEvent(WARNING, REASON_TOO_MANY_MISSED,
                                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds "
                                "or check clock skew"))
    if starting_deadline_seconds is not None and scheduled + timedelta(seconds=starting_deadline_seconds) < now:
        events.append(CronEvent(WARNING, REASON_MISS_SCHEDULE,
                                f"Missed scheduled time to start a job: {_rfc1123z(scheduled)}"))
        return ScheduleDecision(Action.TOO_LATE, scheduled, requeue(), tuple(events))
    if job_name(cronjob_name, scheduled) in active_names or last_schedule_time == scheduled:
        return ScheduleDecision(Action.ALREADY_PROCESSED, scheduled, requeue(), tuple(events))
    if concurrency_policy == "Forbid" and active_names:
        events.append(CronEvent(NORMAL, REASON_JOB_ALREADY_ACTIVE,
                                "Not starting job because prior execution is running and concurrency policy "
                                "is Forbid"))
        return ScheduleDecision(Action.FORBIDDEN, scheduled, requeue(), tuple(events))
    return ScheduleDecision(Action.START, scheduled, requeue(scheduled), tuple(events),
                            replace_active=concurrency_policy == "Replace" and bool(active_names))


def desired_job(cronjob: Mapping[str, Any], scheduled: datetime, zone: tzinfo) -> dict[str, Any]:
    """The Job kube's getJobFromTemplate2 builds for one schedule."""
    meta = cronjob["metadata"]
    template = (cronjob.get("spec") or {}).get("jobTemplate") or {}
    template_meta = template.get("metadata") or {}
    annotations = dict(template_meta.get("annotations") or {})
    annotations[SCHEDULED_TIMESTAMP_ANNOTATION] = scheduled_timestamp(scheduled, zone)
    job_meta: dict[str, Any] = {
        "name": job_name(meta["name"], scheduled),
        "namespace": meta.get("namespace"),
        "annotations": annotations,
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": meta["name"],
                             "uid": meta.get("uid"), "controller": True, "blockOwnerDeletion": True}],
    }
    if template_meta.get("labels"):
        job_meta["labels"] = dict(template_meta["labels"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta,
            "spec": copy.deepcopy(template.get("spec") or {})}


def manual_job(cronjob: Mapping[str, Any], name: str | None) -> dict[str, Any]:
    """The Job `kubectl create job NAME --from=cronjob/X` builds (no name: a generated one)."""
    meta = cronjob["metadata"]
    template = (cronjob.get("spec") or {}).get("jobTemplate") or {}
    template_meta = template.get("metadata") or {}
    annotations = {INSTANTIATE_ANNOTATION: "manual", **(template_meta.get("annotations") or {})}
    job_meta: dict[str, Any] = {
        "namespace": meta.get("namespace"),
        "annotations": annotations,
        # kubectl does not set blockOwnerDeletion (it would need the cronjobs/finalizers permission).
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": meta["name"],
                             "uid": meta.get("uid"), "controller": True}],
    }
    if name:
        job_meta["name"] = name
    else:
        job_meta["generateName"] = f"{meta['name']}-manual-"
    if template_meta.get("labels"):
        job_meta["labels"] = dict(template_meta["labels"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta,
            "spec": copy.deepcopy(template.get("spec") or {})}


@dataclass(frozen=True)
class CronJobSpecView:
    """The fields of a CronJob spec the controller reads, with the API server's defaults."""

    schedule: str
    time_zone: str | None
    suspend: bool
    concurrency_policy: str
    starting_deadline_seconds: int | None
    successful_jobs_history_limit: int
    failed_jobs_history_limit: int

    @classmethod
    def of(cls, cronjob: Mapping[str, Any]) -> CronJobSpecView:
        spec = cronjob.get("spec") or {}
        successful = spec.get("successfulJobsHistoryLimit")
        failed = spec.get("failedJobsHistoryLimit")
        deadline = spec.get("startingDeadlineSeconds")
        return cls(
            schedule=str(spec.get("schedule") or ""),
            time_zone=spec.get("timeZone"),
            suspend=bool(spec.get("suspend")),
            concurrency_policy=spec.get("concurrencyPolicy") or "Allow",
            starting_deadline_seconds=int(deadline) if deadline is not None else None,
            successful_jobs_history_limit=DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT if successful is None else int(successful),
            failed_jobs_history_limit=DEFAULT_FAILED_JOBS_HISTORY_LIMIT if failed is None else int(failed),
        )


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any] | None:
    """A merge patch turning the CronJob status `old` into `new` (None when nothing changed).

    Empty `active` lists are removed, as kube's `omitempty` serializes them.
    """
    patch: dict[str, Any] = {}
    for key in ("active", "lastScheduleTime", "lastSuccessfulTime"):
        before, after = old.get(key) or None, new.get(key) or None
        if before != after:
            patch[key] = after
    return patch or None


def _unparseable(schedule: str, detail: str) -> str:
    return f"unparseable schedule: {_go_quote(schedule)} : {detail}"


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rfc1123z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


# --- Events --------------------------------------------------------------------------------------


@dataclass
class EventRecorder:
    """Writes core/v1 Events about objects, counting repeats the way client-go's correlator does.

    Recording never fails the caller: an Event that cannot be written is logged.
    """

    client: NodeClient
    component: str
    host: str
    clock: Clock
    _seen: dict[tuple[str, str, str, str], tuple[str, str, int]] = field(default_factory=dict)

    async def record(self, obj: Mapping[str, Any], event: CronEvent) -> None:
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        key = (str(meta.get("uid")), event.type, event.reason, event.message)
        now = format_time(self.clock.now())
        try:
            if key in self._seen:
                name, first, count = self._seen[key]
                await self.client.patch(resource_path("v1", "events", namespace, name),
                                        {"count": count + 1, "lastTimestamp": now})
                self._seen[key] = (name, first, count + 1)
                return
            name = f"{meta['name']}.{secrets.token_hex(8)}"
            await self.client.create(resource_path("v1", "events", namespace), {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {"kind": obj.get("kind"), "namespace": namespace, "name": meta["name"],
                                   "uid": meta.get("uid"), "apiVersion": obj.get("apiVersion"),
                                   "resourceVersion": meta.get("resourceVersion")},
                "reason": event.reason, "message": event.message, "type": event.type,
                "source": {"component": self.component, "host": self.host},
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                "reportingComponent": self.component, "reportingInstance": self.host,
            })
            self._seen[key] = (name, now, 1)
        except (ApiError, aiohttp.ClientError) as exc:
            if isinstance(exc, ApiError) and exc.status == 404:
                self._seen.pop(key, None)  # the Event expired or was deleted: start a new one next time
            log.warning("could not record event %s on %s/%s: %s", event.reason, namespace, meta["name"], exc)


# --- the work queue ------------------------------------------------------------------------------


class DelayingQueue:
    """Keys due at node times; a key queued twice keeps its earliest due time (client-go's AddAfter)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._due: dict[ObjectKey, datetime] = {}
        self._changed = asyncio.Event()

    def add(self, key: ObjectKey, after: timedelta = timedelta(0)) -> None:
        due = self.clock.now() + max(after, timedelta(0))
        if key not in self._due or due < self._due[key]:
            self._due[key] = due
            self._changed.set()

    def forget(self, key: ObjectKey) -> None:
        self._due.pop(key, None)

    async def get(self) -> ObjectKey:
        """The next due key, waiting in node time (a newly added key wakes the wait)."""
        while True:
            self._changed.clear()
            if self._due:
                key, due = min(self._due.items(), key=lambda item: item[1])
                wait = (due - self.clock.now()).total_seconds()
                if wait <= 0:
                    del self._due[key]
                    return key
            else:
                wait = None
            await _first_of(self._changed.wait(), None if wait is None else self.clock.sleep(wait))


async def _first_of(*awaitables: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in awaitables if a is not None]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _resource_version(obj: Mapping[str, Any] | None) -> int:
    try:
        return int((obj or {}).get("metadata", {}).get("resourceVersion") or -1)
    except ValueError:
        return -1


# --- the controller ------------------------------------------------------------------------------


class CronJobController:
    """Schedules the Jobs of every CronJob in the cluster (see the module docstring)."""

    def __init__(self, client: NodeClient, settings: NodeSettings) -> None:
        self.client = client
        self.settings = settings
        self.clock = settings.clock
        self.cronjobs = Informer(client, CRONJOBS)
        self.jobs = Informer(client, JOBS)
        self.queue = DelayingQueue(self.clock)
        self.events = EventRecorder(client, COMPONENT, settings.node_name, self.clock)
        # What this controller wrote and the informers may not show yet (watch lag): used when newer.
        self._written_cronjobs: dict[ObjectKey, dict[str, Any]] = {}
        self._created_jobs: dict[ObjectKey, dict[str, Any]] = {}
        self._deleted_jobs: set[str] = set()  # uids of Jobs deleted here that the watch may still show
        self._failures: dict[ObjectKey, int] = {}
        self._first_seen: dict[str, datetime] = {}  # by uid, node time (see creation_in_node_time)

    async def run(self) -> None:
        """Watch CronJobs and Jobs and sync each CronJob when it changes or a schedule is due."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._watch_cronjobs())
            tasks.create_task(self._watch_jobs())
            await self.cronjobs.synced.wait()
            await self.jobs.synced.wait()
            tasks.create_task(self._work())

    async def _watch_cronjobs(self) -> None:
        async for kind, obj in self.cronjobs.events():
            key = object_key(obj)
            self._first_seen.setdefault(str(obj["metadata"].get("uid")), self.clock.now())
            if kind == "DELETED":
                self._first_seen.pop(str(obj["metadata"].get("uid")), None)
                self.queue.forget(key)
                self._written_cronjobs.pop(key, None)
                self._failures.pop(key, None)
            else:
                self.queue.add(key)

    async def _watch_jobs(self) -> None:
        async for kind, job in self.jobs.events():
            key = object_key(job)
            if kind == "DELETED":
                self._created_jobs.pop(key, None)
                self._deleted_jobs.discard(str(job["metadata"].get("uid")))
            elif key in self._created_jobs and _resource_version(job) >= _resource_version(self._created_jobs[key]):
                del self._created_jobs[key]
            ref = controller_of(job)
            if ref and ref.get("kind") == "CronJob":
                self.queue.add((key[0], str(ref.get("name"))))

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                requeue = await self.sync(key)
            except (TimeoutError, ApiError, aiohttp.ClientError) as exc:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(2.0 ** failures * 0.05, 30.0)  # real seconds, like a rate-limited requeue
                log.warning("syncing CronJob %s/%s failed (%s); retrying in %.1fs", *key, exc, delay)
                self.queue.add(key, timedelta(seconds=delay * self.clock.speed))
                continue
            except Exception:
                log.exception("syncing CronJob %s/%s failed", *key)
                self.queue.add(key, timedelta(seconds=30 * self.clock.speed))
                continue
            self._failures.pop(key, None)
            if requeue is not None:
                self.queue.add(key, requeue)

    def _cronjob(self, key: ObjectKey) -> dict[str, Any] | None:
        cached = self.cronjobs.cache.get(key)
        written = self._written_cronjobs.get(key)
        if cached is None:
            return None
        if written is not None and written["metadata"].get("uid") == cached["metadata"].get("uid") \
                and _resource_version(written) > _resource_version(cached):
            return written
        self._written_cronjobs.pop(key, None)
        return cached

    def _owned_jobs(self, cronjob: Mapping[str, Any]) -> list[dict[str, Any]]:
        namespace, name = object_key(cronjob)
        jobs = {key: job for key, job in self.jobs.cache.items() if key[0] == namespace}
        for key, job in self._created_jobs.items():
            if key[0] == namespace:
                jobs.setdefault(key, job)
        return [job for job in jobs.values()
                if str(job["metadata"].get("uid")) not in self._deleted_jobs and is_owned_by_cronjob(job, name)]

    async def sync(self, key: ObjectKey) -> timedelta | None:
        """One pass of kube's sync for one CronJob; returns when to look again (None: on change only)."""
        cronjob = self._cronjob(key)
        if cronjob is None:
            return None
        namespace, name = key
        spec = CronJobSpecView.of(cronjob)
        old_status = dict(cronjob.get("status") or {})
        status = dict(old_status)
        jobs = self._owned_jobs(cronjob)
        events: list[CronEvent] = []

        # History limits first (kube cleans up before it syncs).
        for job in jobs_to_prune(jobs, spec.successful_jobs_history_limit, spec.failed_jobs_history_limit):
            if await self._delete_job(cronjob, job, events):
                uid = job["metadata"].get("uid")
                status["active"] = [ref for ref in status.get("active") or [] if ref.get("uid") != uid]
                jobs = [j for j in jobs if j["metadata"].get("uid") != uid]

        reconciled = reconcile_active(status.get("active") or [], status.get("lastSuccessfulTime"), jobs)
        events.extend(reconciled.events)
        active = reconciled.active
        for ref in reconciled.unseen:
            # The watch may lag behind: ask the API server before calling a Job missing.
            if await self.client.get(resource_path("batch/v1", "jobs", namespace, ref["name"])) is None:
                events.append(CronEvent(NORMAL, REASON_MISSING_JOB, f"Active job went missing: {ref['name']}"))
                active = [r for r in active if r.get("uid") != ref.get("uid")]
        status["active"] = active
        status["lastSuccessfulTime"] = reconciled.last_successful_time

        requeue = None
        if not cronjob["metadata"].get("deletionTimestamp"):  # a CronJob being deleted only gets its status
            requeue = await self._schedule(cronjob, spec, status, events)

        for event in events:
            await self.events.record(cronjob, event)
        patch = status_patch(old_status, status)
        if patch is not None:
            updated = await self.client.patch_status(resource_path("batch/v1", "cronjobs", namespace, name), patch)
            if updated is not None:
                self._written_cronjobs[key] = updated
        return requeue

    async def _schedule(self, cronjob: dict[str, Any], spec: CronJobSpecView, status: dict[str, Any],
                        events: list[CronEvent]) -> timedelta | None:
        """Start the due Job, if any (mutates `status` and `events`); returns when to look again."""
        namespace, name = object_key(cronjob)
        if spec.time_zone is not None:
            try:
                load_time_zone(spec.time_zone)
            except ScheduleProblem as problem:
                events.append(CronEvent(WARNING, problem.reason, problem.message))
                return None
        if spec.suspend:
            return None
        try:
            schedule, warnings = parse_schedule(spec.schedule, spec.time_zone)
        except ScheduleProblem as problem:
            events.append(CronEvent(WARNING, problem.reason, problem.message))
            return None
        events.extend(warnings)
        first_seen = self._first_seen.setdefault(str(cronjob["metadata"].get("uid")), self.clock.now())
        created = creation_in_node_time(self.clock, parse_time(cronjob["metadata"].get("creationTimestamp")),
                                        first_seen)
        last_schedule_time = parse_time(status.get("lastScheduleTime"))
        now = self.clock.now()
        active = list(status.get("active") or [])
        try:
            decision = schedule_decision(
                schedule, cronjob_name=name, created=created, last_schedule_time=last_schedule_time,
                starting_deadline_seconds=spec.starting_deadline_seconds,
                concurrency_policy=spec.concurrency_policy, active_names=[ref.get("name") for ref in active],
                now=now)
        except InvalidScheduleError as exc:
            events.append(CronEvent(WARNING, REASON_INVALID_SCHEDULE, f"invalid schedule: {spec.schedule} : {exc}"))
            return None
        events.extend(decision.events)
        if decision.action is not Action.START:
            return decision.requeue_after
        assert decision.scheduled_time is not None

        if decision.replace_active:
            for ref in active:
                job = await self.client.get(resource_path("batch/v1", "jobs", namespace, ref["name"]))
                if job is None:
                    status["active"] = [r for r in status["active"] if r.get("uid") != ref.get("uid")]
                    continue
                if not await self._delete_job(cronjob, job, events):
                    raise ApiError(500, f"could not replace job {namespace}/{ref['name']}", "DELETE", ref["name"])
                status["active"] = [r for r in status["active"] if r.get("uid") != ref.get("uid")]

        manifest = desired_job(cronjob, decision.scheduled_time, schedule.zone)
        try:
            job = await self.client.create(resource_path("batch/v1", "jobs", namespace), manifest)
            events.append(CronEvent(NORMAL, REASON_SUCCESSFUL_CREATE, f"Created job {job['metadata']['name']}"))
            self._created_jobs[object_key(job)] = job
        except ApiError as exc:
            if exc.status != 409:
                events.append(CronEvent(WARNING, REASON_FAILED_CREATE, f"Error creating job: {exc.message}"))
                raise
            # Created before, but the status update was lost: adopt it if it is ours.
            existing = await self.client.get(resource_path("batch/v1", "jobs", namespace, manifest["metadata"]["name"]))
            if existing is None or not is_owned_by_cronjob(existing, name) or \
                    (controller_of(existing) or {}).get("uid") != cronjob["metadata"].get("uid"):
                return decision.requeue_after
            if any(ref.get("uid") == existing["metadata"].get("uid") for ref in status["active"]):
                return decision.requeue_after
            job = existing
        status["active"] = [*status["active"], job_reference(job)]
        status["lastScheduleTime"] = format_time(decision.scheduled_time)
        return decision.requeue_after

    async def _delete_job(self, cronjob: Mapping[str, Any], job: Mapping[str, Any], events: list[CronEvent]) -> bool:
        """Delete a Job and its Pods (background propagation, as kube); False when the API server refused."""
        namespace, job_name_ = object_key(job)
        try:
            existed = await self.client.delete(resource_path("batch/v1", "jobs", namespace, job_name_),
                                               propagation="Background")
        except ApiError as exc:
            events.append(CronEvent(WARNING, REASON_FAILED_DELETE, f"Deleted job: {exc.message}"))
            return False
        self._created_jobs.pop((namespace, job_name_), None)
        self._deleted_jobs.add(str(job["metadata"].get("uid")))
        if existed:
            events.append(CronEvent(NORMAL, REASON_SUCCESSFUL_DELETE, f"Deleted job {job_name_}"))
        return True


async def create_job_from_cronjob(client: NodeClient, namespace: str, name: str,
                                  job_name: str | None = None) -> dict[str, Any]:
    """Run a CronJob once now: what `kubectl create job JOB --from=cronjob/NAME` does.

    The Job gets the CronJob's job template, the annotation `cronjob.kubernetes.io/instantiate:
    manual` and a controller ownerReference to the CronJob (so history limits and
    lastSuccessfulTime take it into account, and deleting the CronJob deletes it). Without
    `job_name` the API server generates `<cronjob>-manual-xxxxx`. Raises LookupError when the
    CronJob does not exist and ApiError when the API server refuses the Job.
    """
    cronjob = await client.get(resource_path("batch/v1", "cronjobs", namespace, name))
    if cronjob is None:
        raise LookupError(f'cronjobs.batch "{name}" not found in namespace "{namespace}"')
    return await client.create(resource_path("batch/v1", "jobs", namespace), manual_job(cronjob, job_name))
