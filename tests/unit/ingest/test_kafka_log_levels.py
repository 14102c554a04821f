"""kafka-python's closing chatter is logged at INFO; a real failure stays an ERROR."""

from __future__ import annotations

import logging

import kafka.errors
import pytest

from causalwatch.settings import KafkaSettings
from ingest.kafka_config import kafka_python_config


@pytest.fixture
def cluster_log(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    kafka_python_config(KafkaSettings())  # every kafka-python client is built through this
    caplog.set_level(logging.DEBUG, logger="kafka.cluster")
    return logging.getLogger("kafka.cluster")


def test_cancelled_on_close_is_info(
    cluster_log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    cluster_log.error("Metadata refresh: failed %s", kafka.errors.Cancelled())
    (rec,) = [r for r in caplog.records if r.name == "kafka.cluster"]
    assert (rec.levelname, rec.levelno) == ("INFO", logging.INFO)
    assert "Metadata refresh: failed" in rec.getMessage()


def test_a_lost_connection_stays_an_error(
    cluster_log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    cluster_log.error("Metadata refresh: failed %s", kafka.errors.KafkaConnectionError("reset"))
    (rec,) = [r for r in caplog.records if r.name == "kafka.cluster"]
    assert rec.levelname == "ERROR"


def test_demoted_record_is_dropped_when_info_is_off(
    cluster_log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    cluster_log.setLevel(logging.WARNING)
    try:
        cluster_log.error("Metadata refresh: failed %s", kafka.errors.Cancelled())
    finally:
        cluster_log.setLevel(logging.NOTSET)
    assert [r for r in caplog.records if r.name == "kafka.cluster"] == []
