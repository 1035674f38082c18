from datetime import UTC, datetime, timedelta

from kubeloop.core import conditions

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_set_condition_adds_with_generation_and_time():
    result = conditions.set_condition([], "Ready", "False", "Pending", "waiting", now=T0, generation=3)
    assert result == [{
        "type": "Ready", "status": "False", "reason": "Pending", "message": "waiting",
        "lastTransitionTime": "2026-01-02T03:04:05Z", "observedGeneration": 3,
    }]


def test_transition_time_kept_when_status_does_not_flip():
    first = conditions.set_condition([], "Ready", "False", "Pending", "waiting", now=T0, generation=1)
    second = conditions.set_condition(first, "Ready", "False", "Other", "still waiting", now=T1, generation=2)
    assert second[0]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert second[0]["reason"] == "Other"
    assert second[0]["observedGeneration"] == 2


def test_transition_time_moves_when_status_flips():
    first = conditions.set_condition([], "Ready", "False", "Pending", "waiting", now=T0, generation=1)
    second = conditions.set_condition(first, "Ready", "True", "Ready", "ok", now=T1, generation=1)
    assert second[0]["lastTransitionTime"] == "2026-01-02T03:09:05Z"


def test_set_condition_keeps_order_and_does_not_mutate():
    original = [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}]
    result = conditions.set_condition(original, "A", "False", "X", "m", now=T0, generation=None)
    assert [c["type"] for c in result] == ["A", "B"]
    assert original[0] == {"type": "A", "status": "True"}
    assert "observedGeneration" not in result[0]


def test_ready_summary_first_false_wins():
    conds = [
        {"type": "Accepted", "status": "True", "reason": "SpecValid", "message": ""},
        {"type": "DataReady", "status": "False", "reason": "FeatureSetNotReady", "message": "fs x has no version"},
        {"type": "Trained", "status": "False", "reason": "Later", "message": "later"},
    ]
    assert conditions.ready_summary(conds, ["Accepted", "DataReady", "Trained"]) == (
        "False", "FeatureSetNotReady", "fs x has no version")


def test_ready_summary_unknown_when_missing_and_true_when_all_true():
    conds = [{"type": "Accepted", "status": "True"}]
    status, reason, _ = conditions.ready_summary(conds, ["Accepted", "Trained"])
    assert (status, reason) == ("Unknown", "TrainedPending")
    assert conditions.ready_summary(conds, ["Accepted"])[0] == "True"


def test_with_ready_sets_ready_condition():
    conds = [{"type": "Accepted", "status": "True"}]
    result = conditions.with_ready(conds, ["Accepted"], now=T0, generation=7)
    ready = conditions.find_condition(result, "Ready")
    assert ready is not None and ready["status"] == "True" and ready["observedGeneration"] == 7
    assert conditions.is_true(result, "Ready")
    assert not conditions.is_true(conditions.remove_condition(result, "Ready"), "Ready")
