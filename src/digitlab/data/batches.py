"""The fast path: batches are index slices of one uint8 tensor; augmentation runs on whole batches."""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ..errors import DigitlabError
from .core import ImageData

AUGMENT_CHOICES = ("none", "light", "strong", "flip", "reader")


def epoch_order(n: int, generator: torch.Generator | None, rank: int = 0, world: int = 1) -> torch.Tensor:
    """This rank's sample order for one epoch: a shared permutation, padded to a multiple of world, then strided."""
    perm = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    if world > 1:
        padded = math.ceil(n / world) * world
        perm = torch.cat([perm, perm[: padded - n]])
        perm = perm[rank::world]
    return perm


def iterate_batches(data: ImageData, batch_size: int, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images, labels) in `order`: index slices of one tensor in memory (on the data's device), or
    DataLoader batches for a folder streamed from disk (on the CPU)."""
    return data.batches(batch_size, order)


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (or float in [0,1], modified in place) -> normalised float, in one fused pass."""
    x = images.float()
    scale = 1.0 / std if images.dtype != torch.uint8 else 1.0 / (255.0 * std)
    return x.mul_(scale.view(1, -1, 1, 1)).sub_((mean / std).view(1, -1, 1, 1))


def _uniform(generator: torch.Generator | None, n: int, low: float, high: float) -> torch.Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


def random_affine(x: torch.Tensor, generator: torch.Generator | None, degrees: float, shift: float, scale: float,
                  shear: float, elastic: float = 0.0) -> torch.Tensor:
    """Rotate/shift/scale/shear each image of a float batch by its own random amount (one grid_sample call)."""
    b = x.shape[0]
    angle = torch.deg2rad(_uniform(generator, b, -degrees, degrees))
    sh = torch.deg2rad(_uniform(generator, b, -shear, shear))
    s = _uniform(generator, b, 1 - scale, 1 + scale)
    tx, ty = _uniform(generator, b, -shift, shift) * 2, _uniform(generator, b, -shift, shift) * 2  # grid units span 2
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(sh)
    # output pixel centres in [-1, 1] (align_corners=False), mapped through each image's 2x3 matrix;
    # built by broadcasting because F.affine_grid is several times slower on CPU for small images
    h, w = x.shape[-2:]
    xs = ((torch.arange(w, dtype=torch.float32) * 2 + 1) / w - 1).view(1, 1, w)
    ys = ((torch.arange(h, dtype=torch.float32) * 2 + 1) / h - 1).view(1, h, 1)
    col = lambda v: v.view(b, 1, 1)  # noqa: E731
    gx = col(cos / s) * xs + col((-sin + cos * tan) / s) * ys + col(tx)
    gy = col(sin / s) * xs + col((cos + sin * tan) / s) * ys + col(ty)
    grid = torch.stack([gx, gy], dim=-1)
    if elastic > 0:  # smooth random displacement: coarse noise upsampled, so strokes bend instead of tear
        coarse = (torch.rand(b, 2, 4, 4, generator=generator) * 2 - 1) * elastic
        field = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
        grid = grid + field.permute(0, 2, 3, 1)
    grid = grid.to(x.device, x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator | None, pad: int, flip: bool) -> torch.Tensor:
    """Random crops from a reflect-padded batch (pure indexing) and random horizontal flips."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    rows = (torch.arange(h, device=x.device)[None] + dy[:, None])[:, :, None]
    cols = (torch.arange(w, device=x.device)[None] + dx[:, None])[:, None, :]
    out = padded[torch.arange(b, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if flip:
        mask = (torch.rand(b, generator=generator) < 0.5).to(x.device).view(b, 1, 1, 1)
        out = torch.where(mask, out.flip(3), out)
    return out.contiguous()


def _where(pick: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(pick.to(a.device).view(-1, 1, 1, 1), a, b)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of a (B, 1, H, W) batch with a 5x5 kernel (one conv for the whole batch)."""
    t = torch.arange(5, dtype=x.dtype, device=x.device) - 2
    k = torch.exp(-t * t / (2 * sigma * sigma))
    k = (k[:, None] * k[None, :]) / k.sum() ** 2
    return F.conv2d(x, k.view(1, 1, 5, 5), padding=2)


def reader_augment(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Handwriting as photos give it to the reader: rotation up to 15 degrees, shear, elastic bends, off-centre
    crops (shifts of up to 12%), strokes thicker or thinner, blur, and low resolution (the digit shrunk to 8-14 px
    tall and scaled back up, its grey levels stretched so the strokes reach 1, as the photo clean-up draws writing
    under 20 px: `grey_to_mnist`). Each effect hits its own random quarter to third of the batch, as whole-batch
    tensor ops."""
    b, _, h, w = x.shape
    x = random_affine(x, generator, degrees=15, shift=0.12, scale=0.15, shear=10, elastic=0.04)
    u = torch.rand(3, b, generator=generator)
    thick = (x + F.max_pool2d(x, 3, stride=1, padding=1)).mul_(0.75).clamp_(0, 1)  # about half a pixel bolder
    thin = ((x - 0.35) / 0.65).clamp_(0, 1)
    x = _where(u[0] < 0.25, thick, _where(u[0] > 0.8, thin, x))
    x = _where(u[1] < 0.2, _blur(x, 0.5 + 0.4 * float(torch.rand(1, generator=generator))), x)
    digit_px = int(torch.randint(8, 15, (1,), generator=generator))  # the digit's 20-px box at this height
    side = max(4, round(h * digit_px / 20))
    low = F.interpolate(F.interpolate(x, size=(side, side), mode="area"), size=(h, w), mode="bilinear", align_corners=False)
    low = (low / low.amax((2, 3), keepdim=True).clamp_(min=1e-3)).clamp_(0, 1)
    return _where(u[2] < 0.25, low, x)


SINGLE_THREAD_MAX = 128 * 3 * 64 * 64  # batches up to this many values augment on one thread


def augment(images: torch.Tensor, policy: str, generator: torch.Generator | None) -> torch.Tensor:
    """uint8 batch -> float batch in [0, 1], augmented as one tensor.

    Small CPU batches run on one thread (the caller's thread count is restored): each op is a few microseconds of
    work, and with two threads every op waits at a barrier for the other thread, which stalls whenever the other
    core is busy (measured: light augmentation of 128 digits 0.9 ms alone, 70 ms beside another busy process on 2
    cores; on one thread 1.2-1.5 ms either way).
    """
    if images.device.type != "cpu" or images.numel() > SINGLE_THREAD_MAX or torch.get_num_threads() == 1:
        return _augment(images, policy, generator)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _augment(images, policy, generator)
    finally:
        torch.set_num_threads(threads)


def _augment(images: torch.Tensor, policy: str, generator: torch.Generator | None) -> torch.Tensor:
    """`augment` on the current threads.

    Grayscale data (digits, letters) gets small affine warps and no flips, since a flipped 2 is not
    a 2; colour photos get the CIFAR/cats-vs-dogs recipe of crop + flip; `flip` is crop + flip for
    any image (a mirrored shoe is still a shoe).
    """
    if policy not in AUGMENT_CHOICES:
        raise DigitlabError(f"unknown augmentation '{policy}'; choose one of: {', '.join(AUGMENT_CHOICES)}")
    x = images.float().div_(255.0)
    if policy == "none":
        return x
    if policy == "flip":  # objects that are left-right symmetric in kind (clothing): shift by up to 2 px + mirror
        return random_crop_flip(x, generator, 2, flip=True)
    if policy == "reader":
        if images.shape[1] != 1:
            raise DigitlabError("--augment reader is for grayscale digits (it mimics photos of handwriting)")
        return reader_augment(x, generator)
    if images.shape[1] == 1:
        if policy == "light":
            return random_affine(x, generator, degrees=10, shift=0.08, scale=0.1, shear=8)
        return random_affine(x, generator, degrees=15, shift=0.12, scale=0.15, shear=15, elastic=0.04)
    pad = max(2, images.shape[-1] // 8)
    x = random_crop_flip(x, generator, pad, flip=True)
    if policy == "strong":
        x = random_affine(x, generator, degrees=10, shift=0.0, scale=0.1, shear=5)
    return x
