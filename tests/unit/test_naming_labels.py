import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeloop.core import labels, naming

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_short_names_are_kept():
    assert naming.child_name("fraud", "materialize") == "fraud-materialize"


def test_long_names_are_truncated_with_hash_and_stay_distinct():
    a = naming.child_name("a" * 70 + "1", "train")
    b = naming.child_name("a" * 70 + "2", "train")
    assert len(a) <= 63 and len(b) <= 63
    assert a != b
    assert naming.child_name("a" * 70 + "1", "train") == a  # deterministic


def test_job_limit():
    name = naming.child_name("x" * 60, "attempt-1", max_length=naming.JOB_NAME_MAX)
    assert len(name) <= 52


def test_max_length_too_small_is_refused():
    with pytest.raises(ValueError, match="max_length"):
        naming.child_name("a", "b", max_length=5)


@given(st.text(min_size=1, max_size=120), st.text(max_size=40), st.integers(min_value=10, max_value=63))
def test_child_names_are_always_valid_dns_labels(parent, suffix, limit):
    name = naming.child_name(parent, suffix, max_length=limit)
    assert len(name) <= limit
    assert DNS_LABEL.match(name), name


def test_standard_labels():
    result = labels.standard_labels(kind="TrainingRun", name="fraud-v1", component="trainer")
    assert result["app.kubernetes.io/part-of"] == "kubeloop"
    assert result["app.kubernetes.io/managed-by"] == "kubeloop-operator"
    assert result["kubeloop.dev/trainingrun"] == "fraud-v1"
    assert labels.selector_labels(kind="TrainingRun", name="fraud-v1", component="trainer").items() <= result.items()


def test_label_values_of_long_names_stay_valid():
    name = "a" * 62 + "-tail"  # cut at 63 this would end in "-"
    result = labels.standard_labels(kind="FeatureSet", name=name, component="materializer")
    for value in (result["app.kubernetes.io/instance"], result["kubeloop.dev/featureset"]):
        assert len(value) <= 63 and value[-1].isalnum(), value
