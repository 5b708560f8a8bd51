"""Task tests: the contract, parametrised over the registry (plugins get the same checks), then the
properties of each built-in task (MQAR in most detail)."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from archbench.tasks import (
    IGNORE,
    ConfigFieldError,
    Task,
    UnknownNameError,
    create,
    get,
    list_tasks,
)

N = 32


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(params=list_tasks())
def task(request) -> Task:
    return create(request.param)  # defaults are a small config


# -- the contract, for every registered task ------------------------------------------------------------
def test_shapes_dtypes_and_token_range(task):
    x, y = task.make(N, rng())
    assert x.shape == y.shape == (N, task.seq_len)
    assert x.dtype == y.dtype == np.int64
    assert 0 <= x.min() and x.max() < task.vocab_size
    scored = y != IGNORE
    assert ((0 <= y[scored]) & (y[scored] < task.vocab_size)).all(), "targets are tokens or IGNORE"
    assert scored.any(axis=1).all(), "every row has a scored position"


def test_same_seed_same_data_other_seed_other_data(task):
    x0, y0 = task.make(N, rng(0))
    x0b, y0b = task.make(N, rng(0))
    x1, y1 = task.make(N, rng(1))
    assert np.array_equal(x0, x0b) and np.array_equal(y0, y0b)
    assert not np.array_equal(x0, x1)


def test_no_train_test_overlap(task):
    """Two seeds (train / test) share no identical row."""
    x0, y0 = task.make(128, rng(0))
    x1, y1 = task.make(128, rng(1))
    rows0 = {a.tobytes() + b.tobytes() for a, b in zip(x0, y0, strict=True)}
    rows1 = {a.tobytes() + b.tobytes() for a, b in zip(x1, y1, strict=True)}
    assert not rows0 & rows1


def test_global_rng_untouched(task):
    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    before = np.random.get_state(), random.getstate(), torch.get_rng_state()
    task.make(N, rng())
    task.slices(*task.make(4, rng()))
    after = np.random.get_state(), random.getstate(), torch.get_rng_state()
    assert before[0][0] == after[0][0] and np.array_equal(before[0][1], after[0][1])
    assert before[0][2:] == after[0][2:]
    assert before[1] == after[1]
    assert torch.equal(before[2], after[2])


def test_rng_must_be_a_generator(task):
    with pytest.raises(TypeError, match="Generator"):
        task.make(4, 0)
    with pytest.raises(TypeError, match="Generator"):
        task.make(4, np.random)


def test_zero_examples(task):
    x, y = task.make(0, rng())
    assert x.shape == y.shape == (0, task.seq_len)


def test_with_length(task):
    longer = task.with_length(2 * task.seq_len)
    assert type(longer) is type(task) and longer.name == task.name
    assert longer.seq_len == 2 * task.seq_len and task.seq_len == create(task.name).seq_len
    x, y = longer.make(8, rng())
    assert x.shape == y.shape == (8, 2 * task.seq_len)
    assert (y != IGNORE).any(axis=1).all()


def test_slices_are_scored_subsets(task):
    x, y = task.make(N, rng())
    for name, mask in task.slices(x, y).items():
        assert isinstance(name, str)
        assert mask.shape == y.shape and mask.dtype == bool
        assert not (mask & (y == IGNORE)).any(), f"slice {name} includes unscored positions"


def test_config_is_frozen_and_json_plain(task):
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.cfg.seq_len = 1
    assert create(task.name, **dataclasses.asdict(task.cfg)).cfg == task.cfg


# -- registry errors ------------------------------------------------------------------------------------
def test_unknown_task_lists_names():
    with pytest.raises(UnknownNameError, match="mqar") as err:
        create("no-such-task")
    assert "no-such-task" in str(err.value)


def test_unknown_field_lists_fields():
    with pytest.raises(ConfigFieldError, match="num_kv_pairs") as err:
        create("mqar", num_pairs=4)
    assert "num_pairs" in str(err.value)


def test_list_tasks_pattern():
    assert {"mqar", "passkey", "copy", "selective_copy", "induction"} <= set(list_tasks())
    assert list_tasks("*copy") == ["copy", "selective_copy"]
    assert get("mqar").name == "mqar"


# -- MQAR -----------------------------------------------------------------------------------------------
def test_mqar_properties():
    k, length, v = 8, 128, 8192
    task = create("mqar", seq_len=length, num_kv_pairs=k, vocab_size=v)
    x, y = task.make(64, rng(0))
    assert x.shape == y.shape == (64, length)
    x2, y2 = task.make(64, rng(0))
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    scored = y != IGNORE
    assert (scored.sum(axis=1) == k).all()
    for xi, yi, si in zip(x, y, scored, strict=True):
        keys, values = xi[0:2 * k:2], xi[1:2 * k:2]
        assert len(set(keys)) == k and len(set(values)) == k  # Zoology draws both without replacement
        assert ((1 <= keys) & (keys < v // 2)).all() and ((v // 2 <= values) & (values < v)).all()
        bound = dict(zip(keys, values, strict=True))
        q = np.flatnonzero(si)
        assert (q >= 2 * k).all() and ((q - 2 * k) % 2 == 0).all()  # query slots: even offsets
        assert sorted(xi[q]) == sorted(keys), "each key is queried exactly once"
        assert all(yi[p] == bound[xi[p]] for p in q), "target = value bound to the queried key"
        rest = np.ones(length, bool)
        rest[:2 * k] = False
        rest[q] = False
        assert (xi[rest] == 0).all()


def test_mqar_gaps_follow_zoology_power_law():
    """The first key's query gap is the first successive draw: P(gap = g) = p_g, p ∝ a (g+1)^(a-1)."""
    task = create("mqar", seq_len=16, num_kv_pairs=2, vocab_size=16)
    x, _ = task.make(20000, rng(0))
    gap = (np.argmax(x[:, 4:] == x[:, :1], axis=1)) // 2  # first key's query, offset from 2K, / 2
    a, slots = 0.01, 6
    p = a * np.arange(1, slots + 1) ** (a - 1)
    p /= p.sum()
    freq = np.bincount(gap, minlength=slots) / len(gap)
    assert np.abs(freq - p).max() < 0.015  # ~4 standard errors at N = 20000


def test_mqar_uniform_when_power_a_is_one():
    task = create("mqar", seq_len=64, num_kv_pairs=4, vocab_size=64, power_a=1.0)
    _, y = task.make(4000, rng(0))
    pos = np.nonzero(y != IGNORE)[1]
    assert abs(pos.mean() - (8 + 62) / 2) < 1.0


def test_mqar_random_non_queries():
    task = create("mqar", random_non_queries=True)
    x, y = task.make(N, rng(0))
    assert (y != IGNORE).sum(axis=1).tolist() == [4] * N
    assert (x[:, 8:] != 0).mean() > 0.9


def test_mqar_slices_by_query_index():
    task = create("mqar", seq_len=128, num_kv_pairs=8)
    x, y = task.make(N, rng(0))
    s = task.slices(x, y)
    assert list(s) == ["query_1-2", "query_3-4", "query_5-6", "query_7-8"]
    assert (sum(m.astype(int) for m in s.values()) == (y != IGNORE)).all()  # a partition
    assert all((m.sum(axis=1) == 2).all() for m in s.values())


@pytest.mark.parametrize("cfg, match", [
    (dict(seq_len=16, num_kv_pairs=8), "seq_len=16 too short"),
    (dict(seq_len=64, num_kv_pairs=8, vocab_size=16), "vocab_size=16"),
    (dict(num_kv_pairs=0), "num_kv_pairs must be >= 1"),
    (dict(power_a=0.0), "power_a"),
])
def test_mqar_bad_config(cfg, match):
    with pytest.raises(ValueError, match=match):
        create("mqar", **cfg)


def test_mqar_full_slots():
    """seq_len = 4K uses every query slot; K near V/2 exercises the dense distinct sampler."""
    task = create("mqar", seq_len=64, num_kv_pairs=16, vocab_size=34)
    x, y = task.make(N, rng(0))
    assert ((y != IGNORE).sum(axis=1) == 16).all()
    assert all(sorted(r[0:32:2]) == list(range(1, 17)) for r in x)  # all 16 key tokens used


# -- the other built-ins --------------------------------------------------------------------------------
def test_passkey_answer_and_depth():
    task = create("passkey", seq_len=50, depth=0.25)
    x, y = task.make(N, rng(0))
    assert (np.flatnonzero((y != IGNORE).any(axis=0)) == [49]).all()
    pos = round(0.25 * 47)
    assert (x[:, pos] == x[:, -1]).all() and (y[:, -1] == x[:, pos + 1]).all()
    assert ((x[:, :-1] == x[:, -1:]).sum(axis=1) == 1).all(), "the key occurs once before the query"
    s = task.slices(x, y)
    assert s["depth_20-40%"].sum() == N and sum(m.sum() for m in s.values()) == N


def test_passkey_uniform_depth_fills_every_bucket():
    task = create("passkey")
    x, y = task.make(500, rng(0))
    s = task.slices(x, y)
    assert len(s) == 5 and all(m.sum() > 50 for m in s.values())
    with pytest.raises(ValueError, match="depth"):
        create("passkey", depth=1.5)


def test_copy_targets_are_the_string():
    task = create("copy")
    x, y = task.make(N, rng(0))
    for xi, yi in zip(x, y, strict=True):
        sep = int(np.flatnonzero(xi == 2)[0])
        s = xi[1:sep]
        n = len(s)
        assert xi[0] == 1 and 4 <= n <= 16 and (s >= 3).all()
        assert (xi[sep + 1:sep + 1 + n] == s).all() and (xi[sep + 1 + n:] == 0).all()
        assert (yi[sep:sep + n] == s).all() and (np.delete(yi, range(sep, sep + n)) == IGNORE).all()


def test_copy_with_length_tests_longer_strings():
    task = create("copy")
    longer = task.with_length(66)
    assert longer.cfg.max_len == 32 and longer.cfg.min_len == 17
    _, y = longer.make(N, rng(0))
    assert ((y != IGNORE).sum(axis=1) > 16).all()
    with pytest.raises(ValueError, match="seq_len"):
        create("copy", seq_len=10)


def test_selective_copy_replays_data_in_order():
    task = create("selective_copy", seq_len=40, num_tokens=5)
    x, y = task.make(N, rng(0))
    assert (x[:, -5:] == 1).all()
    assert ((y != IGNORE) == (np.arange(40) >= 35)).all()
    for xi, yi in zip(x, y, strict=True):
        assert (xi[:35][xi[:35] != 0] == yi[35:]).all()


def test_induction_recalls_value_after_trigger():
    task = create("induction")
    x, y = task.make(N, rng(0))
    assert (x[:, -1] == 1).all() and ((x[:, :-1] == 1).sum(axis=1) == 1).all()
    p = np.argmax(x[:, :-1] == 1, axis=1)
    assert (y[:, -1] == x[np.arange(N), p + 1]).all()
    assert ((y != IGNORE).sum(axis=1) == 1).all()


# -- helpers --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k, pool", [(2, 16), (3, 4)])  # the rejection path, then the dense path
def test_sample_distinct_is_uniform_over_ordered_tuples(k, pool):
    from math import perm

    from archbench.tasks.base import sample_distinct

    out = sample_distinct(rng(0), 48000, k, 5, 5 + pool)
    assert out.shape == (48000, k) and out.dtype == np.int64
    assert (np.sort(out, axis=1)[:, 1:] != np.sort(out, axis=1)[:, :-1]).all()
    assert out.min() >= 5 and out.max() < 5 + pool
    _, counts = np.unique((out - 5) @ pool ** np.arange(k), return_counts=True)  # one id per tuple
    assert len(counts) == perm(pool, k)
    expected = 48000 / perm(pool, k)
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)
    with pytest.raises(ValueError, match="distinct"):
        sample_distinct(rng(0), 1, pool + 1, 5, 5 + pool)
