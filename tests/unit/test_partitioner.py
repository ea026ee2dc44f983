"""The faster partitioner picks exactly the partition aiokafka's (and the Java client's) picks."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from choreokit.events._kafka import producer_options
from choreokit.events._partitioner import KeyPartitioner, murmur2
from choreokit.events._settings import KafkaSettings

pytestmark = pytest.mark.unit


def test_murmur2_agrees_with_aiokafka_for_every_length_and_byte() -> None:
    rng = random.Random(11)
    for length in range(70):
        for _ in range(40):
            data = rng.randbytes(length)
            assert murmur2(data) == aiokafka_murmur2(data), data
    assert murmur2(b"\xff" * 7) == aiokafka_murmur2(b"\xff" * 7)


def test_known_values_of_the_java_client() -> None:
    # From org.apache.kafka.common.utils.UtilsTest.testMurmur2.
    cases = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536}
    for data, signed in cases.items():
        assert murmur2(data) == signed & 0xFFFF_FFFF


def test_keyed_records_go_where_the_default_partitioner_sends_them() -> None:
    rng = random.Random(5)
    ours, theirs = KeyPartitioner(), DefaultPartitioner()
    for count in (1, 3, 4, 12):
        partitions = list(range(count))
        for _ in range(300):
            key = str(rng.getrandbits(122)).encode()
            expected = theirs(key, partitions, partitions)
            assert ours(key, partitions, partitions) == expected


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    partitioner = KeyPartitioner()
    assert {partitioner(None, [0, 1, 2], [2]) for _ in range(20)} == {2}


def test_producers_use_it() -> None:
    options = producer_options(KafkaSettings(bootstrap="localhost:9092"), idempotent=False)
    assert isinstance(options["partitioner"], KeyPartitioner)
