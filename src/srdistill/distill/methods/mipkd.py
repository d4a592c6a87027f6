"""``mipkd``: Multi-granularity Mixture of Priors KD (Li et al., ICLR 2025), and ``mipkd-lite``.

Per step (``docs/distilling.md`` explains every option and the measurements behind defaults):

* student forward, capturing its features at the matched boundaries; teacher output and
  features from the cache (or a live forward);
* Feature Prior Mixer at each boundary k: ``F_k = D_k(I * E_T(t_k) + (1 - I) * E_S(s_k))`` with
  t_k, s_k the features divided by their running per-channel spread and I a fresh Bernoulli
  3D mask per sample; ``fpm = L1(F_k, t_k)``, ``ae = L1(D_k(E_T(t_k)), t_k)``;
* Block Prior Mixer every ``bpm_every`` steps: ``F_k`` continues through the rest of the teacher
  or of the student (``route``), entering the student through a 1x1 adapter when widths differ;
  ``bpm = L1(that output, teacher output)``. Gradients flow through the frozen teacher blocks
  into the mixers and the student; the teacher's blocks before k are not recomputed (routing);
* plus ``l1`` to the ground truth and ``kd`` to the teacher's output (logits-KD).

Total: l1 + l_kd*kd + l_feat*(fpm + l_ae*ae) + l_block*bpm.

Two registered methods share this objective and differ only in their defaults: ``mipkd`` is the
paper's method (random conv3x3 mixers, l_feat=1, a routed pass on every step), ``mipkd-lite`` the
variant measured cheap on a CPU (fitted linear mixers, l_feat=0, a routed pass every 16th step),
which is logits-KD with l_kd=3 on 15 steps of 16.

A step with a routed pass runs the teacher live on the patch for *all* of that step's teacher
signals: the routed teacher blocks see the patch, so their target must be the teacher's answer on
the same patch (a cached target carries the whole image's context at the patch borders, and an
all-teacher route would then have a non-zero loss there). Steps without one use the cache.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...precision import float32_region
from ...train.objective import Batch
from ..features import NORMS, RunningScale, crop_to_input, match_size
from ..mixers import ENCODERS, ChannelAdapter, FeaturePriorMixer, fit_linear, least_squares, random_mask, set_linear
from ..routing import RoutedForward
from ..spec import DistillContext, MethodSpec, need
from ..teacher import LiveTeacher
from .base import Clock, DistillObjective, l1

ROUTES = ("random", "teacher", "student")
BPM_BOUNDARIES = ("one", "all")
SWITCHES = ("once", "each")


def random_window(height: int, width: int, area: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices of a window covering ``area`` of a height x width map.

    The window's corner is uniform over the whole map and the window wraps around its edges, so
    every position is in it with the same probability (``area``): the mean of a pointwise loss
    over the window is an unbiased estimate of its mean over the map. (A window kept inside an
    n x n map holds a corner pixel in 1 of its (n - w + 1)^2 places and a centre pixel in up to
    w^2 of them: 24 x 24 times as often for a quarter of a 48x48 map.) A 3x3 mixer sees the wrap seam and the window edge as
    neighbours, so for ``encoder=conv3`` it stays an approximation; the paper's ``mipkd`` uses 1.
    """
    h = max(1, min(height, round(height * area**0.5)))
    w = max(1, min(width, round(width * area**0.5)))
    top = int(torch.randint(height, (1,)))
    left = int(torch.randint(width, (1,)))
    rows = (top + torch.arange(h)) % height
    cols = (left + torch.arange(w)) % width
    return rows, cols


class MiPKD(DistillObjective):
    # Adapters (student route) and routed paths are not used every step.
    find_unused_parameters = True

    def __init__(self, context: DistillContext, options: dict[str, Any], spec: MethodSpec | None = None):
        super().__init__(spec or METHOD, context, options)
        o = self.options
        self.fit = o["mixer_init"] == "fit"
        # Fitted mixers work in the normalised teacher space itself: the latent is the teacher's width.
        self.latents = [
            o["latent"] or (b.teacher_channels if self.fit else max(x.student_channels for x in self.boundaries))
            for b in self.boundaries
        ]
        self.mixers = nn.ModuleList(
            FeaturePriorMixer(b.teacher_channels, b.student_channels, latent, o["encoder"])
            for b, latent in zip(self.boundaries, self.latents)
        )
        # Mixed features live in (normalised) teacher space; entering the student needs its width,
        # and, fitted, a map between the two networks' channels even when the widths agree.
        self.adapters = nn.ModuleList(
            ChannelAdapter(b.teacher_channels, b.student_channels)
            if b.teacher_channels != b.student_channels or self.fit
            else nn.Identity()
            for b in self.boundaries
        )
        self.fitted = Clock()  # a checkpointed flag: fitted once, never again after a resume
        self.norm_teacher = nn.ModuleList(RunningScale(b.teacher_channels, o["norm"]) for b in self.boundaries)
        self.norm_student = nn.ModuleList(RunningScale(b.student_channels, o["norm"]) for b in self.boundaries)
        self.teacher_route = RoutedForward(context.teacher)
        self.student_route = RoutedForward(context.student)
        self.weights = {"kd": o["l_kd"], "fpm": o["l_feat"], "ae": o["l_feat"] * o["l_ae"], "bpm": o["l_block"]}
        # Routed steps need the teacher on the patch itself (module doc).
        self.live = LiveTeacher(self.teacher, [b.teacher_block for b in self.boundaries])

    @property
    def routes_every_step(self) -> bool:
        return self.options["bpm_every"] == 1 and self.options["l_block"] > 0

    def prepare(self, data) -> None:
        # A routed pass on every step runs the teacher live on every step: a cache would be
        # built and never read.
        if self.routes_every_step and self.teacher_cache_mode != "off":
            data.note("the Block Prior Mixer routes every step, so the teacher runs live on each patch (no cache)")
            return
        super().prepare(data)

    def trainable(self) -> dict[str, nn.Module]:
        return {
            "fitted": self.fitted,
            "mixers": self.mixers,
            "adapters": self.adapters,
            "norm_teacher": self.norm_teacher,
            "norm_student": self.norm_student,
        }

    # -- random choices shared by every rank (a function of the seed and the step) ---------------
    def plan_routes(self, step: int) -> list[tuple[int, list[str]]]:
        """[(boundary, [network for each stage from that boundary on])] for this step's BPM."""
        o = self.options
        if o["bpm_every"] <= 0 or step % o["bpm_every"] != 0 or o["l_block"] == 0:
            return []
        g = torch.Generator().manual_seed(int(self.context.seed) * 1_000_003 + step)
        k_count = len(self.boundaries)
        starts = list(range(k_count)) if o["bpm_boundaries"] == "all" else [int(torch.randint(k_count, (1,), generator=g))]
        plans = []
        for k in starts:
            stages = k_count - k if o["switch"] == "each" else 1
            if o["route"] == "random":
                nets = ["teacher" if float(torch.rand((), generator=g)) < 0.5 else "student" for _ in range(stages)]
            else:
                nets = [o["route"]] * stages
            plans.append((k, nets))
        return plans

    # -- the routed (Block Prior Mixer) path ----------------------------------------------------
    def _route(
        self, student: nn.Module, lr: torch.Tensor, k: int, mixed: torch.Tensor, nets: list[str], sizes: list[dict[str, Any]]
    ) -> torch.Tensor:
        """Send the mixed feature of boundary k on through ``nets`` (one network per stage);
        ``sizes[j][net]`` is that network's feature size at boundary j."""
        h, w = lr.shape[-2:]
        feature = mixed  # normalised teacher space
        for stage, net in enumerate(nets):
            j = k + stage
            last = stage == len(nets) - 1
            b = self.boundaries[j]
            if net == "teacher":
                runner, module, index = self.teacher_route, self.teacher.net, b.teacher_index
                entering = self.norm_teacher[j].inverse(match_size(feature, sizes[j]["teacher"]))
            else:
                runner, module, index = self.student_route, student, b.student_index
                entering = self.norm_student[j].inverse(self.adapters[j](match_size(feature, sizes[j]["student"])))
            if last:
                return runner.forward_from(module, lr, index, entering)
            nb = self.boundaries[j + 1]
            stop = nb.teacher_index if net == "teacher" else nb.student_index
            out = crop_to_input(runner.forward_from(module, lr, index, entering, stop=stop), h, w)
            if net == "teacher":
                feature = self.norm_teacher[j + 1].normalise(out)
            else:
                feature = self.mixers[j + 1].student_to_teacher(self.norm_student[j + 1].normalise(out))
        raise AssertionError("unreachable")

    def terms(self, batch: Batch, student: nn.Module, step: int) -> dict[str, torch.Tensor]:
        o = self.options
        routes = self.plan_routes(step)
        routed = {k for k, _ in routes}
        fitting = self.fit and int(self.fitted.step) == 0 and student.training
        # With l_feat=0 the mixers only feed the Block Prior Mixer: a step without a routed
        # pass needs no features and no mixing (a logits-KD step's cost).
        feature_loss = o["l_feat"] > 0
        mixing = feature_loss or bool(routes) or fitting
        sr, student_feats = self.student_forward(student, batch.lr, features=mixing, consistency=batch.consistency)
        teacher = self.live(batch) if routes else self.teacher_signal(batch)
        out = {**self.ground_truth(sr, batch), "kd": l1(sr, teacher.output)}
        if fitting:
            self._fit(student_feats, teacher.features)
        fpm = ae = sr.new_zeros((), dtype=torch.float32)
        mixed_features: dict[int, torch.Tensor] = {}
        for k, (fs, ft) in enumerate(zip(student_feats, teacher.features)):
            if not feature_loss and k not in routed:
                continue
            fs = match_size(fs, ft.shape[-2:])
            if k not in routed and o["fpm_area"] < 1:
                # A random (wrapping) window of the maps: for a pointwise mixer an unbiased
                # estimate of its losses at a fraction of the cost (random_window). A boundary
                # routed through the Block Prior Mixer this step needs the whole mixed map.
                rows, cols = random_window(ft.shape[-2], ft.shape[-1], o["fpm_area"])
                ft = ft.index_select(-2, rows.to(ft.device)).index_select(-1, cols.to(ft.device))
                fs = fs.index_select(-2, rows.to(fs.device)).index_select(-1, cols.to(fs.device))
            t = self.norm_teacher[k](ft.float())
            s = self.norm_student[k](fs)
            mask = random_mask(t.new_empty((t.shape[0], self.latents[k], t.shape[2], t.shape[3])), o["mask_ratio"])
            mixed, auto = self.mixers[k](t.to(s.dtype), s, mask)
            fpm = fpm + l1(mixed, t)
            ae = ae + l1(auto, t)
            mixed_features[k] = mixed
        # Terms not computed this step are left out, not filled in: the logged loss is then the
        # loss that was optimised, and a term's logged mean is its mean contribution per step.
        if mixed_features:
            out["fpm"], out["ae"] = fpm / len(mixed_features), ae / len(mixed_features)
        if routes:
            bpm = sr.new_zeros((), dtype=torch.float32)
            sizes = [{"teacher": ft.shape[-2:], "student": fs.shape[-2:]} for fs, ft in zip(student_feats, teacher.features)]
            for k, nets in routes:
                y = self._route(student, batch.lr, k, mixed_features[k], nets, sizes)
                bpm = bpm + l1(y, teacher.output)
            out["bpm"] = bpm / len(routes)
        return out

    @torch.no_grad()
    @float32_region()  # runs inside the step's autocast; statistics and solves stay float32
    def _fit(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> None:
        """Fitted start (mixers.fit_linear) on this first batch; adapters by least squares too."""
        for k, (fs, ft) in enumerate(zip(student_feats, teacher_feats)):
            t = self.norm_teacher[k](ft.float())  # also initialises the running statistics
            s = self.norm_student[k](match_size(fs, t.shape[-2:]).float())
            fit_linear(self.mixers[k], t, s)
            if isinstance(self.adapters[k], ChannelAdapter):
                set_linear(self.adapters[k].conv, *least_squares(t, s))
        self.fitted.tick()
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():  # every rank starts from rank 0's fit
            for module in (self.mixers, self.adapters, self.norm_teacher, self.norm_student):
                for tensor in list(module.parameters()) + list(module.buffers()):
                    dist.broadcast(tensor.data, src=0)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["latent"] = self.latents
        return out


def _checker(method: str):
    def check(o: dict[str, Any]) -> None:
        for key in ("l_kd", "l_feat", "l_ae", "l_block"):
            need(o[key] >= 0, method, key, "must be 0 or more")
        need(o["latent"] >= 0, method, "latent", "must be 0 (auto: the widest student boundary) or a positive width")
        need(0 <= o["mask_ratio"] <= 1, method, "mask_ratio", f"is the teacher's share of the mask, in [0, 1], got {o['mask_ratio']}")
        need(o["mixer_init"] != "fit" or o["encoder"] == "linear", method, "mixer_init",
             "fit needs encoder=linear and latent=0 (a fitted start is defined for linear mixers; mipkd-lite uses it); or set mixer_init=random")
        need(o["mixer_init"] != "fit" or o["latent"] == 0, method, "latent",
             "fitted mixers work in the teacher's feature space: leave latent=0")
        need(0 < o["fpm_area"] <= 1, method, "fpm_area", f"is a share of the map in (0, 1], got {o['fpm_area']}")
        need(o["bpm_every"] >= 0, method, "bpm_every", "must be 0 (no Block Prior Mixer) or a number of steps")

    return check


# The paper's method. Where the paper gives no value, the help says so and why ours.
PAPER_OPTIONS = {
    "l_kd": 1.0,
    "l_feat": 1.0,
    "l_ae": 1.0,
    "l_block": 0.1,
    "latent": 64,
    "encoder": "conv3",
    "mixer_init": "random",
    "mask_ratio": 0.5,
    "fpm_area": 1.0,
    "norm": "channel",
    "bpm_every": 1,
    "bpm_boundaries": "one",
    "route": "random",
    "switch": "once",
}

OPTION_HELP = {
    "l_kd": "weight of L1(student output, teacher output); the paper's total loss has this logits-KD term, its weight is not stated: 1",
    "l_feat": "weight of the Feature Prior Mixer loss L1(decoded mix, teacher feature) (paper: 1, its ablation's best; 0: the mixers only feed the Block Prior Mixer)",
    "l_ae": "auto-encoder loss L1(D(E_T(t)), t), relative to l_feat (the paper has the loss, not its weight: 1)",
    "l_block": "weight of the Block Prior Mixer loss L1(routed output, teacher output) (paper: 0.1, its ablation's best)",
    "latent": "latent width C_z of the mixers' encoders/decoder (the paper leaves it open: 64, the width of its EDSR/RCAN features; 0: the widest student boundary; fitted: the teacher's width)",
    "encoder": "encoder/decoder shape: conv3 (3x3 conv, act, 3x3 conv; the paper's CNN), conv1 (1x1 convs), linear (one 1x1 conv)",
    "mixer_init": "random (the paper), or fit (linear mixers only): teacher encoder/decoder at the identity, student encoder and adapters by least squares on the first batch",
    "mask_ratio": "probability that a latent element comes from the teacher, i.i.d. over (C_z, H, W) per sample and step (the paper's random 3D mask; its ratio is not stated: 0.5, the unbiased mix)",
    "fpm_area": "share of each feature map the Feature Prior Mixer sees per step (a random window, every position equally likely; 1: all, the paper)",
    "norm": "feature scaling before mixing: channel (running per-channel std), global, none (the paper is silent: channel, because SwinIR's features grow by orders of magnitude with depth and the deepest boundary would dominate the L1 terms)",
    "bpm_every": "run the Block Prior Mixer's routed forward every N steps (the paper: every step, 1; 0: never)",
    "bpm_boundaries": "boundaries routed per BPM step: one (drawn at random) or all (the paper is silent: one, a single routed forward per step; all adds one per boundary)",
    "route": "network after the boundary: random (teacher or student, 50/50: the paper's R_k), teacher, student",
    "switch": "routed path picks a network once, or again at every later boundary (each) (the paper is silent: once, one switch of networks per routed pass)",
}

CHOICES = {
    "encoder": ENCODERS,
    "mixer_init": ("random", "fit"),
    "norm": NORMS,
    "bpm_boundaries": BPM_BOUNDARIES,
    "route": ROUTES,
    "switch": SWITCHES,
}

REFERENCE = "Li et al., Knowledge Distillation with Multi-granularity Mixture of Priors for Image Super-Resolution, ICLR 2025"

METHOD = MethodSpec(
    id="mipkd",
    title="MiPKD as in the paper: random conv3x3 Feature Prior Mixers (l_feat=1, auto-encoder loss), "
    "a Block Prior Mixer pass on every step (l_block=0.1), plus logits-KD",
    build=MiPKD,
    options=PAPER_OPTIONS,
    option_help=OPTION_HELP,
    choices=CHOICES,
    check=_checker("mipkd"),
    uses_features=True,
    reference=REFERENCE,
)

# The variant measured on CPU budgets (benchmarks/RESULTS.md, kd_quality): fitted linear mixers
# trained only through a Block Prior Mixer pass every 16th step, output KD at weight 3. At 2400
# steps it ties logits-KD; it is not the paper's method, hence its own name.
LITE_OPTIONS = {
    **PAPER_OPTIONS,
    "l_kd": 3.0,
    "l_feat": 0.0,
    "latent": 0,
    "encoder": "linear",
    "mixer_init": "fit",
    "fpm_area": 0.25,
    "bpm_every": 16,
}


def _build_lite(context: DistillContext, options: dict[str, Any]) -> MiPKD:
    return MiPKD(context, options, LITE)


LITE = MethodSpec(
    id="mipkd-lite",
    title="MiPKD's mixers made cheap: fitted linear mixers, a Block Prior Mixer pass every 16th step, "
    "no Feature Prior Mixer loss; logits-KD (l_kd=3) on the other steps",
    build=_build_lite,
    options=LITE_OPTIONS,
    option_help=OPTION_HELP,
    choices=CHOICES,
    check=_checker("mipkd-lite"),
    uses_features=True,
    reference=REFERENCE + " (a cheap variant, not the paper's configuration)",
)
