"""2D slice augmentation applied identically to an image (C, H, W) and its labels (H, W).

Geometry (flips, rotation, scaling, elastic deformation) moves both arrays by the same mapping: linear
interpolation for the image, nearest neighbour for the labels, so label values never blend. Intensity jitter
(brightness/contrast, gamma, Gaussian noise, blur) touches the image only. Images are expected in [0, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy import ndimage

from lungseg_core.errors import InputError


@dataclass
class AugmentConfig:
    """Probabilities and ranges of each augmentation; all off by default (``enabled`` False)."""

    enabled: bool = False
    flip_lr: float = 0.0  # probability of a left-right (x) flip
    flip_ud: float = 0.0  # probability of an anterior-posterior (y) flip
    swap_labels_on_lr_flip: list[int] | None = None  # e.g. [1, 2]: right/left lung labels follow the mirror
    # probability of a quarter turn (either way): 2D slice images come stored sideways (MedSeg / COVID-SemiSeg
    # has the spine on the right), so infection models should not learn one layout. Not for right/left lung
    # labels, which a turned image no longer tells apart by side.
    rot90_prob: float = 0.0
    rotate_prob: float = 0.0
    rotate_deg: float = 20.0  # uniform in [-rotate_deg, +rotate_deg]
    scale_prob: float = 0.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    # elastic deformation (Ronneberger et al. 2015): a smooth random displacement field, ``elastic_sigma`` pixels
    # smooth, whose largest displacement is ``elastic_magnitude`` pixels. Patchy lesions change shape, not place.
    elastic_prob: float = 0.0
    elastic_magnitude: float = 4.0
    elastic_sigma: float = 8.0
    intensity_prob: float = 0.0  # brightness/contrast: x * c + b
    contrast_range: tuple[float, float] = (0.9, 1.1)
    brightness_range: tuple[float, float] = (-0.05, 0.05)
    gamma_prob: float = 0.0
    gamma_range: tuple[float, float] = (0.8, 1.25)
    noise_prob: float = 0.0
    noise_std: float = 0.02
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    # a coarser scan (3 mm pixels, smooth kernel): down-sample in-plane by a factor in ``lowres_zoom``, back up
    lowres_prob: float = 0.0
    lowres_zoom: tuple[float, float] = (0.5, 1.0)

    @classmethod
    def from_dict(cls, values: dict | None) -> "AugmentConfig":
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(
                f"Unknown augmentation option(s) {', '.join(unknown)}", f"use only: {', '.join(sorted(known))}"
            )
        for key in ("scale_range", "contrast_range", "brightness_range", "gamma_range", "blur_sigma", "lowres_zoom"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        config = cls(**values)
        for f in fields(cls):
            if f.name.endswith("_prob") or f.name.startswith("flip_"):
                p = getattr(config, f.name)
                if not 0.0 <= float(p) <= 1.0:
                    raise InputError(f"augmentation.{f.name} = {p} is not a probability", "give a value in [0, 1]")
        if config.rot90_prob and config.swap_labels_on_lr_flip:
            raise InputError("augmentation.rot90_prob is set together with swap_labels_on_lr_flip",
                             "a turned image no longer tells right from left by side: set rot90_prob to 0")
        if config.elastic_magnitude < 0 or config.elastic_sigma <= 0:
            raise InputError(f"augmentation.elastic_magnitude = {config.elastic_magnitude}, elastic_sigma = "
                             f"{config.elastic_sigma} cannot deform", "give a magnitude >= 0 and a sigma > 0 (pixels)")
        if not all(0.0 < zoom <= 1.0 for zoom in config.lowres_zoom):
            raise InputError(f"augmentation.lowres_zoom = {list(config.lowres_zoom)} is not a down-sampling",
                             "give two factors in (0, 1], e.g. [0.5, 1.0]")
        return config

    def to_dict(self) -> dict:
        return asdict(self)


class Augmenter:
    """Callable ``(image, labels) -> (image, labels)`` drawing its random choices from ``rng``."""

    def __init__(self, config: AugmentConfig | dict | None = None, rng: np.random.Generator | None = None):
        self.config = config if isinstance(config, AugmentConfig) else AugmentConfig.from_dict(config)
        self.rng = rng if rng is not None else np.random.default_rng()

    def __call__(self, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.config.enabled:
            return image, labels
        image, labels = self._flips(image, labels)
        image, labels = self._affine(image, labels)
        image, labels = self._elastic(image, labels)
        return self._intensity(image), labels

    def _chance(self, p: float) -> bool:
        return p > 0 and self.rng.random() < p

    def _flips(self, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        if self._chance(cfg.flip_lr):
            image, labels = image[..., ::-1], labels[..., ::-1]
            if cfg.swap_labels_on_lr_flip:
                # A mirrored chest has its right lung where the left one was: keep labels tied to image side.
                a, b = cfg.swap_labels_on_lr_flip
                labels = np.where(labels == a, b, np.where(labels == b, a, labels))
        if self._chance(cfg.flip_ud):
            image, labels = image[..., ::-1, :], labels[..., ::-1, :]
        if self._chance(cfg.rot90_prob):
            turns = int(self.rng.choice([1, 3]))
            image, labels = np.rot90(image, turns, axes=(-2, -1)), np.rot90(labels, turns, axes=(-2, -1))
        return np.ascontiguousarray(image), np.ascontiguousarray(labels)

    def _affine(self, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        angle = self.rng.uniform(-cfg.rotate_deg, cfg.rotate_deg) if self._chance(cfg.rotate_prob) else 0.0
        scale = self.rng.uniform(*cfg.scale_range) if self._chance(cfg.scale_prob) else 1.0
        if angle == 0.0 and scale == 1.0:
            return image, labels
        matrix, offset = rotation_scale_matrix(labels.shape, angle, scale)
        return warp_pair(image, labels, lambda array, order, cval: ndimage.affine_transform(
            array, matrix, offset, order=order, mode="constant", cval=cval))

    def _elastic(self, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        if not self._chance(cfg.elastic_prob):
            return image, labels
        return elastic_deform(image, labels, cfg.elastic_magnitude, cfg.elastic_sigma, self.rng)

    def _intensity(self, image: np.ndarray) -> np.ndarray:
        cfg = self.config
        out = image.astype(np.float32)
        if self._chance(cfg.intensity_prob):
            out = out * self.rng.uniform(*cfg.contrast_range) + self.rng.uniform(*cfg.brightness_range)
        if self._chance(cfg.gamma_prob):
            out = np.clip(out, 0.0, 1.0) ** self.rng.uniform(*cfg.gamma_range)
        if self._chance(cfg.blur_prob):
            sigma = self.rng.uniform(*cfg.blur_sigma)
            out = np.stack([ndimage.gaussian_filter(channel, sigma) for channel in out])
        if self._chance(cfg.lowres_prob):
            out = np.stack([coarser(channel, self.rng.uniform(*cfg.lowres_zoom)) for channel in out])
        if self._chance(cfg.noise_prob):
            out = out + self.rng.normal(0.0, cfg.noise_std, out.shape).astype(np.float32)
        return np.clip(out, 0.0, 1.0).astype(image.dtype)


def elastic_deform(image: np.ndarray, labels: np.ndarray, magnitude: float, sigma: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (C, H, W) and ``labels`` (H, W) moved by one smooth random field, at most ``magnitude`` pixels."""
    coords = np.indices(labels.shape, dtype=np.float32)
    for axis_coords in coords:
        field = ndimage.gaussian_filter(rng.uniform(-1.0, 1.0, labels.shape), sigma)
        axis_coords += (magnitude / max(float(np.abs(field).max()), 1e-12)) * field.astype(np.float32)
    return warp_pair(image, labels, lambda array, order, cval: ndimage.map_coordinates(
        array, coords, order=order, mode="constant", cval=cval))


def warp_pair(image: np.ndarray, labels: np.ndarray, warp) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (C, H, W) and ``labels`` (H, W) through one geometric ``warp(array, order, cval)``: the image
    linearly with the image's minimum (air) outside the field of view, the labels by nearest neighbour with 0."""
    fill = float(image.min())
    warped = np.stack([warp(channel, 1, fill) for channel in image.astype(np.float32)])
    return warped.astype(image.dtype), warp(labels, 0, 0).astype(labels.dtype)


def coarser(image: np.ndarray, zoom: float) -> np.ndarray:
    """``image`` (H, W) as a scan with ``zoom`` times as many pixels across would show it, on the same grid:
    area-averaged down to the coarse grid, then linearly interpolated back."""
    if zoom >= 1.0:
        return image
    small = ndimage.zoom(ndimage.uniform_filter(image, size=max(1, round(1 / zoom))), zoom, order=1)
    back = ndimage.zoom(small, np.divide(image.shape, small.shape), order=1)
    return back[: image.shape[0], : image.shape[1]]


def rotation_scale_matrix(shape: tuple[int, int], angle_deg: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Matrix and offset for ``ndimage.affine_transform`` rotating/zooming a 2D array about its centre.

    affine_transform maps output coordinates to input coordinates, hence the inverse rotation and 1/scale.
    """
    theta = np.deg2rad(angle_deg)
    cos, sin = np.cos(theta), np.sin(theta)
    matrix = np.array([[cos, -sin], [sin, cos]]) / scale
    center = (np.asarray(shape, dtype=float) - 1) / 2
    offset = center - matrix @ center
    return matrix, offset
