"""Run profiles, device choice and seeding — the three knobs every notebook and experiment shares.

The profile comes from the environment variable ``ATTNCOURSE_PROFILE``:

* ``smoke`` — tiny data and one short epoch, so every notebook runs in seconds on a CPU (CI).
* ``demo``  — the default when nothing is set (e.g. Colab): a notebook's live demonstration of the training
  loop, a couple of minutes on one CPU thread. A demonstration, never evidence.
* ``cpu``   — a reduced real run (a few thousand images, several epochs, 3 seeds) that finishes on a
  laptop CPU in minutes per arm; results say ``profile: cpu`` and are not presented as GPU runs.
* ``full``  — the real run, the course's evidence (5 seeds per arm; it finishes on a laptop CPU, slowly). The
  command line's ``run``/``run-all`` use it unless told otherwise.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, replace

import numpy as np
import torch

__all__ = ["Profile", "PROFILES", "get_profile", "pick_device", "seed_everything", "device_name", "demo_note"]

ENV_VAR = "ATTNCOURSE_PROFILE"
DEFAULT_PROFILE = "demo"  # what a notebook trains live when nothing is set (Colab): minutes, not the full experiment


@dataclass(frozen=True)
class Profile:
    """How big a run is. Experiments read their sizes from here, never from literals."""

    name: str
    n_train: int  # generated training samples per diagnostic task
    n_test: int  # generated test samples
    epochs: int  # training epochs
    batch_size: int
    seeds: int  # default number of seeds per experiment arm

    def with_(self, **changes) -> "Profile":
        """A copy with some fields changed (``profile.with_(epochs=3)``)."""
        return replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", n_train=384, n_test=192, epochs=1, batch_size=64, seeds=1),
    "demo": Profile("demo", n_train=2000, n_test=500, epochs=3, batch_size=128, seeds=1),
    "cpu": Profile("cpu", n_train=2000, n_test=1000, epochs=8, batch_size=128, seeds=3),
    "full": Profile("full", n_train=8000, n_test=2000, epochs=15, batch_size=128, seeds=5),
}


def get_profile(name: str | None = None) -> Profile:
    """Return the named profile, or the one ``ATTNCOURSE_PROFILE`` selects (default ``demo``: a notebook's live
    demonstration; the command line's experiments default to ``full``).

    >>> get_profile("smoke").epochs
    1
    """
    chosen = name if name is not None else os.environ.get(ENV_VAR, DEFAULT_PROFILE)
    key = chosen.strip().lower()
    if key not in PROFILES:
        valid = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown profile {chosen!r} (from {ENV_VAR} or argument); valid profiles: {valid}")
    return PROFILES[key]


def pick_device(prefer: str | torch.device | None = None) -> torch.device:
    """CUDA when present, else Apple MPS, else CPU. ``prefer`` overrides (e.g. ``"cpu"``)."""
    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_name(device: torch.device | str | None = None) -> str:
    """A human-readable name of the device a number was measured on (goes into results/*.json)."""
    device = pick_device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        import platform

        return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    return device.type


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a torch Generator seeded the same way."""
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def demo_note(profile: Profile, histories, n_train: int, device=None, unit: str = "training images") -> str:
    """One line under a notebook's live run: its budget, how long it took here, and that it is not a result.

    ``histories`` is one :class:`~attncourse.train.History` or a dict of them (anything with ``seconds``, the
    per-epoch training times); ``unit`` names what ``n_train`` counts. The time is the one measured by this run on ``device``, never a stated one.
    """
    runs = list(histories.values()) if isinstance(histories, dict) else [histories]
    if not runs:
        raise ValueError("demo_note: no training history given")
    seconds = sum(sum(h.seconds) for h in runs)
    budget = "the `demo` budget" if profile.name == "demo" else f"the `{profile.name}` profile"
    arms = f"{len(runs)} network(s), " if len(runs) > 1 else ""
    return (f"Live run at {budget}: {arms}{n_train:,} {unit}, {profile.epochs} epoch(s), one seed, "
            f"trained in {seconds:.0f} s on {device_name(device)}. A demonstration of the training loop: its numbers "
            "are not results (the recorded full-profile runs are).")
