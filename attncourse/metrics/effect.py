"""The course's one effect estimator: Δ with a 95 % interval over seeds *and* the finite, paired test set.

Every table, verdict sentence, summary and graded question states an effect the same way:

* **Δ** — the arm's mean test metric over seeds minus the baseline's (seeds paired: seed *s* of the arm against
  seed *s* of the baseline);
* **a 95 % interval** for the Δ one would expect over new seeds *and* new test images of the same task;
* **one of three labels** — *clear gain* (the interval lies above 0), *clear loss* (below 0), *inconclusive*
  (it contains 0, or there is only one seed).

Why two noise terms. Each seed trains a different network, so the per-seed differences ``d_s`` scatter (the
*seed term*, estimated by their variance over the ``n`` paired seeds, ``s²/n``). All seeds are tested on the
*same* finite test set, so a difference that the test images happen to favour is shared by every seed and does
not average out over seeds (the *item term*). It is estimated from the **per-item outcomes** of the paired runs
(which test images each run got right; each re-ID query's AP; each segmentation image's intersections and
unions): for accuracy-like metrics the variance of the per-item difference ``e_i`` (averaged over the paired
seeds that have items) divided by the number of items; for mIoU, a paired bootstrap over test images. The two
variances add, and the interval uses Student's t with Welch–Satterthwaite degrees of freedom (with 3–5 seeds a
normal quantile would be too narrow).

Conservative where information is missing, and said so in the row (``item_source``):

* ``"paired"`` — per-item outcomes of at least one paired seed (usually all, or the recorded seed-0 checkpoints):
  ``e_i`` then still carries the seed × item interaction, which the seed term counts too: slightly wide;
* ``"binomial bound"`` — no per-item outcomes, an accuracy metric: the unpaired binomial variance
  ``(p_a(1-p_a) + p_b(1-p_b)) / N``, an upper bound whenever the two arms' errors are not negatively correlated;
* ``"none"`` — neither: the interval has the seed term only, and the row says so.

:func:`simulate_coverage` is the check that the interval means what it says (tested: 90–98 % coverage of a known
Δ, and at most ~5 % "clear" labels at Δ = 0).
"""
from __future__ import annotations

import base64
import math
import zlib

import numpy as np

__all__ = ["LABELS", "encode_array", "decode_array", "correct_items", "mean_items", "iou_items", "item_values",
           "paired_effect", "simulate_coverage"]

LABELS = ("clear gain", "clear loss", "inconclusive")
LEVEL = 0.95


# --------------------------------------------------------------------------- per-item outcomes, compactly
def encode_array(a) -> str:
    """A numpy array as text for a JSON record: ``dtype:shape:base64(zlib(bytes))``."""
    a = np.ascontiguousarray(a)
    shape = "x".join(str(s) for s in a.shape)
    return f"{a.dtype.str}:{shape}:" + base64.b64encode(zlib.compress(a.tobytes(), 9)).decode("ascii")


def decode_array(text: str) -> np.ndarray:
    """Inverse of :func:`encode_array`."""
    try:
        dtype, shape, data = text.split(":", 2)
        dims = tuple(int(s) for s in shape.split("x")) if shape else ()
        return np.frombuffer(zlib.decompress(base64.b64decode(data)), dtype=np.dtype(dtype)).reshape(dims)
    except Exception as err:  # a malformed record must say what it is, not fail deep in numpy
        raise ValueError(f"decode_array: not an encoded array ({text[:40]!r}…): {err}") from None


def correct_items(correct) -> dict:
    """Per-item outcomes of a classification run: which test images it got right (a bool vector, bit-packed)."""
    c = np.asarray(correct, dtype=bool).reshape(-1)
    return {"kind": "correct", "n": int(c.size), "bits": encode_array(np.packbits(c))}


def mean_items(values, kind: str = "mean") -> dict:
    """Per-item outcomes of a metric that is the mean of per-item values (e.g. each re-ID query's AP)."""
    v = np.asarray(values, dtype=np.float32).reshape(-1)
    return {"kind": kind, "n": int(v.size), "values": encode_array(v)}


def iou_items(intersection, union) -> dict:
    """Per-image intersections and unions ``[N, K]`` of a segmentation run (mIoU = mean_k ΣI / ΣU)."""
    inter = np.asarray(intersection, dtype=np.int64)
    uni = np.asarray(union, dtype=np.int64)
    if inter.shape != uni.shape or inter.ndim != 2:
        raise ValueError(f"iou_items: intersection {inter.shape} and union {uni.shape} must both be [N, K]")
    small = np.uint16 if max(int(uni.max(initial=0)), 0) < 2 ** 16 else np.uint32
    return {"kind": "iou", "n": int(inter.shape[0]), "intersection": encode_array(inter.astype(small)),
            "union": encode_array(uni.astype(small))}


def item_values(items: dict):
    """Decode per-item outcomes: a float64 vector ``[N]`` (mean-type metrics), or ``(I, U)`` ``[N, K]`` (mIoU)."""
    kind = items.get("kind")
    if kind == "correct":
        return np.unpackbits(decode_array(items["bits"]))[: items["n"]].astype(np.float64)
    if kind == "iou":
        return decode_array(items["intersection"]).astype(np.float64), decode_array(items["union"]).astype(np.float64)
    if "values" in items:
        return decode_array(items["values"]).astype(np.float64)
    raise ValueError(f"item_values: unknown per-item record of kind {kind!r}")


def _miou_weighted(inter: np.ndarray, union: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """mIoU of each resample: ``weights [B, N]`` image counts → ``[B]`` (classes with no union are left out)."""
    i, u = weights @ inter, weights @ union
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(u > 0, i / np.where(u > 0, u, 1), np.nan)
    return np.nanmean(iou, axis=1)


# --------------------------------------------------------------------------- the estimator
def _t_quantile(p: float, df: float) -> float:
    from scipy.stats import t

    return float(t.ppf(p, df)) if math.isfinite(df) else float(_normal_quantile(p))


def _normal_quantile(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


def _item_variance(pairs: list[tuple[dict, dict]], n_boot: int, rng_seed: int) -> float:
    """Variance of Δ caused by drawing the (shared) test items: the part of the per-item difference that every
    seed shares.

    With per-item outcomes of ``m`` paired seeds: ``V_mean`` = variance (over test-set draws) of the seed-averaged
    metric difference, ``V_each`` = the mean over seeds of each seed's own; each seed's own part (it is in the
    seed term already) is ``(V_each − V_mean)·m/(m−1)``, and the shared part is ``V_mean`` less that part / ``m``.
    With one seed the two cannot be told apart and the whole ``V_each`` is used (conservative).
    Accuracy-like metrics use the exact ``var_i / N``; mIoU a paired bootstrap over images (``n_boot`` resamples).
    """
    decoded = [(item_values(a), item_values(b)) for a, b in pairs]
    if isinstance(decoded[0][0], tuple):  # mIoU: a paired bootstrap over images
        n = decoded[0][0][0].shape[0]
        rng = np.random.default_rng(rng_seed)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
        diffs = np.array([_miou_weighted(*a, weights) - _miou_weighted(*b, weights) for a, b in decoded])
        v_each = float(np.mean(np.var(diffs, axis=1, ddof=1)))
        v_mean = float(np.var(diffs.mean(0), ddof=1))
    else:
        sizes = {len(a) for a, b in decoded} | {len(b) for a, b in decoded}
        if len(sizes) != 1:
            raise ValueError(f"paired_effect: per-item outcomes of different lengths {sorted(sizes)}: "
                             f"not the same test set")
        per_seed = np.array([a - b for a, b in decoded])  # [m, N]
        n = per_seed.shape[1]
        if n < 2:
            return 0.0
        v_each = float(np.mean(np.var(per_seed, axis=1, ddof=1))) / n
        v_mean = float(np.var(per_seed.mean(0), ddof=1)) / n
    m = len(decoded)
    if m < 2:
        return v_each
    own = max(0.0, (v_each - v_mean) * m / (m - 1))
    return max(0.0, v_mean - own / m)


def paired_effect(arm: list[dict], base: list[dict], *, metric: str = "accuracy", n_test: int | None = None,
                  level: float = LEVEL, n_boot: int = 400, rng_seed: int = 0) -> dict:
    """Δ of ``arm`` over ``base`` with its interval and label.

    ``arm`` / ``base``: one dict per run, ``{"seed", "value", "items"?}`` (``items`` as written by
    :func:`correct_items`, :func:`mean_items` or :func:`iou_items`). Runs are paired by seed; seeds present in
    only one arm are left out. ``n_test`` (test-set size) is needed only for the binomial bound.

    Returns ``{"delta", "ci_low", "ci_high", "label", "per_seed", "n", "seed_se", "item_se", "df",
    "item_source", "item_seeds"}`` (``ci_*`` are ``nan`` and the label *inconclusive* with fewer than 2 pairs).
    """
    by_seed = {r["seed"]: r for r in base}
    pairs = [(r, by_seed[r["seed"]]) for r in sorted(arm, key=lambda r: r["seed"]) if r["seed"] in by_seed]
    n = len(pairs)
    if n == 0:
        raise ValueError("paired_effect: the two arms share no seed")
    d = np.array([a["value"] - b["value"] for a, b in pairs], dtype=np.float64)
    delta = float(d.mean())
    with_items = [(a["items"], b["items"]) for a, b in pairs if a.get("items") and b.get("items")]
    if with_items:
        v_item, source = _item_variance(with_items, n_boot, rng_seed), "paired"
    elif metric == "accuracy" and n_test:
        pa = float(np.mean([a["value"] for a, _ in pairs]))
        pb = float(np.mean([b["value"] for _, b in pairs]))
        v_item, source = (pa * (1 - pa) + pb * (1 - pb)) / n_test, "binomial bound"
    else:
        v_item, source = 0.0, "none"
    out = {"delta": delta, "per_seed": [float(x) for x in d], "n": n, "item_source": source,
           "item_seeds": len(with_items), "item_se": math.sqrt(v_item)}
    if n < 2:
        return {**out, "ci_low": math.nan, "ci_high": math.nan, "label": "inconclusive", "seed_se": math.nan,
                "df": math.nan}
    v_seed = float(np.var(d, ddof=1)) / n
    total = v_seed + v_item
    n_items = with_items[0][0]["n"] if source == "paired" else (n_test or 10 ** 6)  # the test items' count
    denom = (v_seed ** 2) / (n - 1) + (v_item ** 2) / max(1, n_items - 1)
    df = total ** 2 / denom if denom > 0 else math.inf
    half = _t_quantile(0.5 + level / 2, df) * math.sqrt(total)
    low, high = delta - half, delta + half
    label = "clear gain" if low > 0 else "clear loss" if high < 0 else "inconclusive"
    return {**out, "ci_low": low, "ci_high": high, "label": label, "seed_se": math.sqrt(v_seed), "df": df}


# --------------------------------------------------------------------------- checking the estimator
def simulate_coverage(true_delta: float, *, draws: int = 300, seeds: int = 5, n_items: int = 500,
                      seed_sd: float = 0.01, item_spread: float = 0.2, items_for: str = "all",
                      rng_seed: int = 0) -> dict:
    """How often the interval covers a known Δ, and how often it says *clear*, over ``draws`` simulated studies.

    Each study draws a fresh test set of ``n_items`` items with a difficulty ``q_i ~ U(0.3, 0.7)`` shared by both
    arms (so the arms' errors correlate) and a preference ``f_i ~ U(−item_spread, item_spread)`` (items that one
    arm happens to suit better: the test set's own noise, shared by every seed), one training offset per
    arm × seed ``~ N(0, seed_sd)``, and Bernoulli outcomes with probability ``q_i ± f_i/2 + offset``
    (+ ``true_delta`` for the arm): the population Δ is exactly ``true_delta``. ``items_for``: ``"all"`` seeds carry per-item outcomes, ``"first"`` only seed 0 (as the
    course's older runs), ``"none"`` (the binomial bound).
    """
    rng = np.random.default_rng(rng_seed)
    covered = clear = 0
    for _ in range(draws):
        q = rng.uniform(0.3, 0.7, n_items)
        favour = rng.uniform(-item_spread, item_spread, n_items)  # items one arm happens to suit better
        runs = {"a": [], "b": []}
        for arm, base in (("a", q + true_delta + favour / 2), ("b", q - favour / 2)):
            for s in range(seeds):
                p = np.clip(base + rng.normal(0, seed_sd), 0, 1)
                hit = rng.random(n_items) < p
                rec = {"seed": s, "value": float(hit.mean())}
                if items_for == "all" or (items_for == "first" and s == 0):
                    rec["items"] = correct_items(hit)
                runs[arm].append(rec)
        row = paired_effect(runs["a"], runs["b"], n_test=n_items)
        covered += row["ci_low"] <= true_delta <= row["ci_high"]
        clear += row["label"] != "inconclusive"
    return {"coverage": covered / draws, "clear_rate": clear / draws, "draws": draws}
