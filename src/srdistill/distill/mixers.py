"""The learnable parts of feature methods, built from the boundary channel table.

* :class:`FeaturePriorMixer` (MiPKD's FPM, one per boundary): separate encoders for the teacher
  and the student feature into one latent space, a random 3D mask choosing per (channel, y, x)
  between the two latents, and a decoder back to (normalised) teacher-feature space.
* :class:`ChannelAdapter`: a 1x1 convolution between feature widths (FitNet's regressor, and
  the way a mixed feature enters a student whose width differs from the teacher's).

They are trained with the student and never saved into the student's file.

Encoder/decoder kinds: ``conv3`` (3x3 conv, activation, 3x3 conv: the paper's CNN), ``conv1``
(the same with 1x1 convs) and ``linear`` (one 1x1 conv). Randomly initialised mixers only say
something useful after they have been trained for a while, which a short run never gives them;
linear ones can start *fitted* (:func:`fit_linear`): the teacher encoder and the decoder at the
identity (the latent space is the normalised teacher space) and the student encoder at the
least-squares map from student to teacher features on the first batch. From the first step the
mix is then a real mixture of teacher features and the student's best linear account of them.
"""

from __future__ import annotations

import torch
from torch import nn

from ..precision import float32_region

ENCODERS = ("conv3", "conv1", "linear")


def _conv(in_ch: int, out_ch: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2)


def small_cnn(in_ch: int, out_ch: int, hidden: int, kind: str = "conv3") -> nn.Module:
    """conv -> activation -> conv: the encoder/decoder shape the MiPKD paper found best (CNN, not MLP)."""
    if kind not in ENCODERS:
        raise ValueError(f"encoder kind {kind!r} not in {ENCODERS}")
    if kind == "linear":
        return _conv(in_ch, out_ch, 1)
    k = 3 if kind == "conv3" else 1
    return nn.Sequential(_conv(in_ch, hidden, k), nn.LeakyReLU(0.1, inplace=True), _conv(hidden, out_ch, k))


def random_mask(like: torch.Tensor, teacher_share: float) -> torch.Tensor:
    """i.i.d. Bernoulli(``teacher_share``) over (C, H, W), per sample; 1 takes the teacher latent."""
    return (torch.rand(like.shape, device=like.device) < teacher_share).to(like.dtype)


class FeaturePriorMixer(nn.Module):
    """FPM at one boundary: ``F = D(I * E_T(f_t) + (1 - I) * E_S(f_s))``."""

    def __init__(self, teacher_channels: int, student_channels: int, latent: int, kind: str = "conv3"):
        super().__init__()
        self.encode_teacher = small_cnn(teacher_channels, latent, latent, kind)
        self.encode_student = small_cnn(student_channels, latent, latent, kind)
        self.decode = small_cnn(latent, teacher_channels, latent, kind)

    @staticmethod
    def mix(z_teacher: torch.Tensor, z_student: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return mask * z_teacher + (1 - mask) * z_student

    def forward(
        self, f_teacher: torch.Tensor, f_student: torch.Tensor, mask: torch.Tensor | None = None, teacher_share: float = 0.5
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(decoded mixed feature, decoded teacher-only feature for the auto-encoder loss)."""
        z_t = self.encode_teacher(f_teacher)
        z_s = self.encode_student(f_student)
        if mask is None:
            mask = random_mask(z_t, teacher_share)
        # One decoder call for both: the batch doubles, the weights are read once.
        both = self.decode(torch.cat([self.mix(z_t, z_s, mask), z_t]))
        mixed, auto = both.chunk(2)
        return mixed, auto

    def student_to_teacher(self, f_student: torch.Tensor) -> torch.Tensor:
        """Student feature in teacher space (the mask all student): used when a routed path
        switches from the student to the teacher at a later boundary."""
        return self.decode(self.encode_student(f_student))


class ChannelAdapter(nn.Module):
    """1x1 convolution from ``in_ch`` to ``out_ch`` channels."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@torch.no_grad()
@float32_region()  # a bf16 Gram matrix loses three digits; CUDA has no bf16 solve
def least_squares(source: torch.Tensor, target: torch.Tensor, ridge: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) minimising ||W x + b - y||^2 over all positions of two N x C x H x W maps (ridge-regularised)."""
    x = source.detach().float().transpose(0, 1).flatten(1)  # C_in x P
    y = target.detach().float().transpose(0, 1).flatten(1)  # C_out x P
    x_mean, y_mean = x.mean(1, keepdim=True), y.mean(1, keepdim=True)
    xc, yc = x - x_mean, y - y_mean
    gram = xc @ xc.T
    gram += ridge * (gram.diagonal().mean() + 1e-8) * torch.eye(gram.shape[0], device=gram.device)
    weight = torch.linalg.solve(gram, xc @ yc.T).T  # C_out x C_in
    return weight, (y_mean - weight @ x_mean).squeeze(1)


@torch.no_grad()
def set_linear(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    conv.weight.copy_(weight.reshape(conv.weight.shape).to(conv.weight.dtype))
    if conv.bias is not None:
        conv.bias.copy_(bias if bias is not None else torch.zeros_like(conv.bias))


@torch.no_grad()
@float32_region()
def fit_linear(mixer: FeaturePriorMixer, teacher: torch.Tensor, student: torch.Tensor) -> None:
    """Start a linear mixer fitted to one batch of (normalised) features; see the module notes."""
    if not isinstance(mixer.encode_teacher, nn.Conv2d) or mixer.encode_teacher.weight.shape[0] != teacher.shape[1]:
        raise ValueError("fitted mixers need the linear kind with a latent as wide as the teacher feature")
    eye = torch.eye(teacher.shape[1], device=teacher.device)
    set_linear(mixer.encode_teacher, eye)
    set_linear(mixer.decode, eye)
    set_linear(mixer.encode_student, *least_squares(student, teacher))


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
