"""One training loop for every generative family.

A run folder holds ``config.yaml``, ``metrics.csv`` (step, seconds, losses and any
metrics; TensorBoard events in ``tensorboard/``), ``samples/step_NNNNNN.png`` (a
grid from a fixed noise batch every sample interval) and
``checkpoints/step_NNNNNN.pt`` (every save interval, atomic; a versioned dict of
state_dicts, optimizer states, RNG states, step and config, read with
``weights_only=True``). ``resume=True`` continues from the newest checkpoint and
reaches, bitwise on CPU, the weights of an uninterrupted run.

Speed without shrinking models: the fakes of critic steps are made without
gradient tracking; the discriminator's parameters do not collect gradients during
generator steps (single process); losses are summed on the device and read once
per log interval (no per-step host syncs); channels_last convolutions, fused Adam,
multi-tensor RMSprop and weight clipping (on the CPU too, see issue #14 and
benchmarks/bench_gen.py; ``speedups=False`` is the previous CPU path, the benchmark's
baseline); on CUDA, bf16 autocast. Multi-GPU / multi-node data parallelism comes
from Lightning Fabric (``devices``).
"""

from __future__ import annotations

import copy
import math
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cxrlab.data.loader import PackedTensor
from cxrlab.data.packed import open_packed
from cxrlab.data.show import image_grid, save_grid
from cxrlab.errors import CxrlabError
from cxrlab.gen.config import GenConfig
from cxrlab.gen.diffaug import diff_augment, parse_policy
from cxrlab.gen.losses import discriminator_loss, elbo_loss, generator_loss, gradient_penalty
from cxrlab.gen.models import ModelOptions, OptimizerSpec, Recipe, build_model
from cxrlab.gen.sampling import generate, to_uint8
from cxrlab.utils import outputs
from cxrlab.utils.checkpoint import load_checkpoint, save_checkpoint
from cxrlab.utils.device import make_fabric
from cxrlab.utils.outputs import check_output
from cxrlab.utils.progress import tqdm
from cxrlab.utils.runlog import RunLog, capture_rng, restore_rng

SAMPLE_GRID = 64
CHECKPOINT_PATTERN = re.compile(r"step_(\d+)\.pt$")

#: ``metrics_fn(generator, step) -> {name: value}``, called at save intervals on rank 0.
MetricsFn = Callable[[nn.Module, int], dict[str, float]]


@dataclass
class TrainResult:
    """A finished run: ``seconds`` of training in all (metrics included, over resumes
    too), ``metrics_seconds`` of them spent on metrics at save intervals."""

    run: Path
    step: int
    seconds: float
    last_row: dict[str, float]
    metrics_seconds: float = 0.0

    @property
    def metrics_share(self) -> float:
        """The fraction of the training time the metrics took (0 without metrics)."""
        return self.metrics_seconds / self.seconds if self.seconds > 0 else 0.0


def build_recipe(config: GenConfig) -> Recipe:
    """The family's recipe with the run's overrides applied."""
    options = ModelOptions(
        latent_dim=config.latent_dim,
        spectral_norm=config.spectral_norm,
        generator=config.generator,
        diffusion=config.diffusion_options(),
    )
    recipe = build_model(config.model, config.size_px, options)
    if config.loss and recipe.loss != "elbo":
        recipe.loss = config.loss
    if config.n_critic and recipe.discriminator is not None:
        recipe.n_critic = config.n_critic
    if config.lr_g:
        recipe.g_optimizer = OptimizerSpec(
            recipe.g_optimizer.name, config.lr_g, recipe.g_optimizer.betas
        )
    if config.lr_d and recipe.d_optimizer:
        recipe.d_optimizer = OptimizerSpec(
            recipe.d_optimizer.name, config.lr_d, recipe.d_optimizer.betas
        )
    return recipe


def make_optimizer(
    spec: OptimizerSpec, parameters, device: torch.device, speedups: bool = True
) -> torch.optim.Optimizer:
    """Adam with fused kernels (CUDA, and the CPU with ``speedups``), RMSprop with the
    multi-tensor (foreach) kernels; ``speedups=False``: the CPU's per-tensor loops."""
    if spec.name == "adam":
        fused = device.type == "cuda" or (speedups and device.type == "cpu") or None
        return torch.optim.Adam(parameters, lr=spec.lr, betas=spec.betas, fused=fused)
    if spec.name == "rmsprop":
        foreach = device.type == "cuda" or speedups or None
        return torch.optim.RMSprop(parameters, lr=spec.lr, foreach=foreach)
    raise CxrlabError(f"unknown optimizer {spec.name!r}")


def latest_checkpoint(run: Path, step: int | None = None) -> Path | None:
    """The checkpoint of ``step``, or the newest one, in ``run/checkpoints``."""
    folder = Path(run) / "checkpoints"
    found = {
        int(m.group(1)): p
        for p in folder.glob("step_*.pt")
        if (m := CHECKPOINT_PATTERN.search(p.name))
    }
    if not found:
        return None
    if step is None:
        return found[max(found)]
    if step not in found:
        raise CxrlabError(
            f"{folder} has no checkpoint of step {step}; it has steps {sorted(found)}"
        )
    return found[step]


def newest_good_checkpoint(run: Path, map_location="cpu") -> dict | None:
    """The state of the newest checkpoint of ``run`` that loads; a corrupt newer one is
    skipped with a warning (a crash can truncate only the file being written, and writes
    are atomic, but disks fail). None when the run has no checkpoint.

    Raises:
        CxrlabError: when checkpoints exist but none loads.
    """
    folder = Path(run) / "checkpoints"
    found = sorted(
        (
            (int(m.group(1)), p)
            for p in folder.glob("step_*.pt")
            if (m := CHECKPOINT_PATTERN.search(p.name))
        ),
        reverse=True,
    )
    errors = []
    for _, path in found:
        try:
            state = load_checkpoint(path, map_location=map_location)
        except CxrlabError as error:
            errors.append(str(error))
            warnings.warn(
                f"{path} cannot be loaded ({error}); falling back to the previous checkpoint",
                stacklevel=2,
            )
            continue
        return state
    if errors:
        raise CxrlabError(f"no checkpoint of {run} can be loaded: {errors[0]}")
    return None


def load_real_images(config: GenConfig) -> tuple[PackedTensor, torch.Tensor]:
    """Real images (N, 1, S, S) in [-1, 1] and covid labels (N,) from the PACKED, per the config.

    The images stay in the PACKED's memory map, gathered a batch at a time
    (:class:`~cxrlab.data.loader.PackedTensor`): a run's memory does not grow with N.
    """
    packed = open_packed(config.data)
    if packed.images.shape[1:] != (config.size_px, config.size_px):
        raise CxrlabError(
            f"{config.data} holds {packed.images.shape[1]} px images but --size is {config.size_px}; "
            f"preprocess with `cxrlab data preprocess DATASET --size {config.size_px}`"
        )
    rows = packed.select(config.splits, config.covid)
    if len(rows) == 0:
        raise CxrlabError(
            f"{config.data}: no images with split {config.split!r} and label {config.label!r}"
        )
    images = PackedTensor(packed.images, rows)
    labels = torch.from_numpy(packed.manifest["covid"].to_numpy()[rows].astype(np.int64))
    return images, labels


class _EMA:
    """Exponential moving average of a module's parameters (buffers are copied).

    The decay ramps up as ``min(decay, (1 + step) / (10 + step))``, ``step`` counted from
    the generator's first training step (``Recipe.ema_start``): with a fixed 0.999 the
    average would still carry most of the random initial weights after a few hundred
    steps, and early sample grids would show only grey.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        decay = min(self.decay, (1.0 + step) / (10.0 + step))
        for average, current in zip(self.module.parameters(), module.parameters(), strict=True):
            average.lerp_(current, 1.0 - decay)
        for average, current in zip(self.module.buffers(), module.buffers(), strict=True):
            average.copy_(current)


class GenTrainer:
    """Trains one generative model per :class:`GenConfig` (see the module docstring)."""

    def __init__(
        self,
        config: GenConfig,
        fabric,
        *,
        progress: bool = True,
        metrics_fn: MetricsFn | None = None,
        speedups: bool = True,
    ):
        self.config = config
        self.speedups = speedups
        self.fabric = fabric
        self.progress = progress and fabric.is_global_zero
        self.metrics_fn = metrics_fn
        self.run = Path(config.out)
        self.device = fabric.device
        self.policy = parse_policy(config.diffaug)

        torch.manual_seed(config.seed)  # identical initial weights on every replica
        self.recipe = build_recipe(config)
        self.generator = self.recipe.generator
        self.discriminator = self.recipe.discriminator
        if not speedups:
            _plain_dropout(self.generator, self.discriminator)
        # channels_last: oneDNN's faster convolutions on the CPU too (the adversarial and
        # VAE families; diffusion keeps its measured CPU path); no effect on MLPs
        self.channels_last = self.device.type == "cuda" or (
            speedups and self.recipe.train_step is None
        )
        if self.channels_last:
            self.generator.to(memory_format=torch.channels_last)
            if self.discriminator is not None:
                self.discriminator.to(memory_format=torch.channels_last)
        self.g_opt = make_optimizer(
            self.recipe.g_optimizer, self.generator.parameters(), self.device, speedups
        )
        self.g_model, self.g_opt = fabric.setup(self.generator, self.g_opt)
        if self.discriminator is not None:
            self.d_opt = make_optimizer(
                self.recipe.d_optimizer, self.discriminator.parameters(), self.device, speedups
            )
            self.d_model, self.d_opt = fabric.setup(self.discriminator, self.d_opt)
            self.d_params = list(self.discriminator.parameters())
        # networks a family trains beside the generator (the LDM's autoencoder and critic)
        self.extra_models: dict[str, nn.Module] = {}
        self.extra_optimizers: dict[str, torch.optim.Optimizer] = {}
        for name, module in self.recipe.extra_modules.items():
            if self.device.type == "cuda":
                module.to(memory_format=torch.channels_last)
            optimizer = make_optimizer(
                self.recipe.extra_optimizers[name], module.parameters(), self.device, speedups
            )
            self.extra_models[name], self.extra_optimizers[name] = fabric.setup(module, optimizer)
        self.ema = _EMA(self.generator, config.ema) if config.ema > 0 else None

        real, labels = load_real_images(config)
        self.real_images = real.to(self.device)
        self.real_labels = labels.to(self.device)
        rank = fabric.global_rank
        torch.manual_seed(config.seed * 1000 + rank)  # dropout, DiffAugment, penalty mixing
        self.data_rng = torch.Generator().manual_seed(config.seed * 1000 + 1 + rank)
        self.noise_rng = torch.Generator().manual_seed(config.seed * 1000 + 2 + rank)
        # a conditional run's grid alternates the classes it was trained on
        self.grid_labels = (
            torch.full((SAMPLE_GRID,), config.covid)
            if config.covid is not None
            else torch.arange(SAMPLE_GRID) % 2
        )
        self.augment = None
        if config.augment:
            from cxrlab.preprocess.augment import BatchAugment

            self.augment = BatchAugment(config.augment, seed=config.seed * 1000 + 3 + rank)
        self.step = 0
        self.elapsed = 0.0

    # ----------------------------------------------------------------- state
    def state(self) -> dict:
        state = {
            "step": self.step,
            "seconds": self.elapsed,
            "config": self.config.as_dict(),
            "generator": self.generator.state_dict(),
            "g_optimizer": self.g_opt.state_dict(),
            "rng_data": self.data_rng.get_state(),
            "rng_noise": self.noise_rng.get_state(),
            **capture_rng(self.device),
        }
        if self.discriminator is not None:
            state["discriminator"] = self.discriminator.state_dict()
            state["d_optimizer"] = self.d_opt.state_dict()
        if self.ema is not None:
            state["ema"] = self.ema.module.state_dict()
        if self.extra_models:
            state["extra_modules"] = {
                name: module.state_dict() for name, module in self.recipe.extra_modules.items()
            }
            state["extra_optimizers"] = {
                name: optimizer.state_dict() for name, optimizer in self.extra_optimizers.items()
            }
        return state

    def load_state(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        _load_optimizer(self.g_opt, state["g_optimizer"])
        if self.discriminator is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            _load_optimizer(self.d_opt, state["d_optimizer"])
        if self.ema is not None and "ema" in state:
            self.ema.module.load_state_dict(state["ema"])
        for name, module in self.recipe.extra_modules.items():
            module.load_state_dict(state["extra_modules"][name])
            _load_optimizer(self.extra_optimizers[name], state["extra_optimizers"][name])
        restore_rng(state, self.device)
        self.data_rng.set_state(state["rng_data"])
        self.noise_rng.set_state(state["rng_noise"])
        self.step = int(state["step"])
        self.elapsed = float(state["seconds"])

    # ----------------------------------------------------------------- steps
    def _real_batch(self, draw: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(
            len(self.real_images), (self.config.batch_size,), generator=self.data_rng
        )
        index = index.to(self.device)
        images, labels = self.real_images[index], self.real_labels[index]
        if self.augment is not None:
            images = self.augment(images, draw)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels

    def _noise(self) -> torch.Tensor:
        return torch.randn(
            self.config.batch_size, self.config.latent_dim, generator=self.noise_rng
        ).to(self.device)

    def train_step(self) -> dict[str, torch.Tensor]:
        """One generator update (with its critic steps): the losses, still on the device."""
        if self.recipe.train_step is not None:  # a family with its own objective (diffusion)
            return self.recipe.train_step(self)
        if self.recipe.loss == "elbo":
            return self._vae_step()
        return self._adversarial_step()

    def _vae_step(self) -> dict[str, torch.Tensor]:
        images, _ = self._real_batch(self.step)
        logits, mu, logvar = self.g_model(images=images)
        loss, reconstruction, kl = elbo_loss(logits, images, mu, logvar)
        self.g_opt.zero_grad(set_to_none=True)
        self.fabric.backward(loss)
        self.g_opt.step()
        return {"loss": loss.detach(), "reconstruction": reconstruction.detach(), "kl": kl.detach()}

    def _adversarial_step(self) -> dict[str, torch.Tensor]:
        recipe, config = self.recipe, self.config
        out: dict[str, torch.Tensor] = {}
        single = self.fabric.world_size == 1
        if single:
            self.discriminator.requires_grad_(True)
        for critic_step in range(recipe.n_critic):
            real, labels = self._real_batch(self.step * recipe.n_critic + critic_step)
            with torch.no_grad():
                fake = self.g_model(self._noise(), labels if recipe.conditional else None)
            conditioning = labels if recipe.conditional else None
            real_in, fake_in = diff_augment(real, self.policy), diff_augment(fake, self.policy)
            real_scores = self.d_model(real_in, conditioning)
            fake_scores = self.d_model(fake_in, conditioning)
            d_loss = discriminator_loss(recipe.loss, real_scores, fake_scores)
            if recipe.gp_weight:
                # through the unwrapped critic, in float32: Fabric's mixed-precision wrapper
                # forbids torch.autograd.grad on its outputs (seen on CUDA with bf16)
                penalty = gradient_penalty(
                    self.discriminator, real_in.float(), fake_in.float(), conditioning
                )
                d_loss = d_loss + recipe.gp_weight * penalty
                out["gp"] = penalty.detach()
            self.d_opt.zero_grad(set_to_none=True)
            self.fabric.backward(d_loss)
            self.d_opt.step()
            if recipe.clip_value:
                self._clip(recipe.clip_value)
        out["d_loss"] = d_loss.detach()
        out["d_real"] = real_scores.detach().mean()
        out["d_fake"] = fake_scores.detach().mean()

        if single:  # the generator step needs no gradients of the discriminator's weights
            self.discriminator.requires_grad_(False)
        labels = self.real_labels[
            torch.randint(len(self.real_labels), (config.batch_size,), generator=self.data_rng).to(
                self.device
            )
        ]
        conditioning = labels if recipe.conditional else None
        fake = self.g_model(self._noise(), conditioning)
        g_loss = generator_loss(
            recipe.loss, self.d_model(diff_augment(fake, self.policy), conditioning)
        )
        self.g_opt.zero_grad(set_to_none=True)
        self.fabric.backward(g_loss)
        self.g_opt.step()
        out["g_loss"] = g_loss.detach()
        return out

    @torch.no_grad()
    def _clip(self, value: float) -> None:
        """Clip the critic's weights to [-value, value] (WGAN), in two multi-tensor ops."""
        if self.speedups:
            torch._foreach_clamp_min_(self.d_params, -value)
            torch._foreach_clamp_max_(self.d_params, value)
        else:
            for parameter in self.d_params:
                parameter.clamp_(-value, value)

    # ----------------------------------------------------------------- outputs
    def sampler(self) -> nn.Module:
        """The module to sample from: the EMA generator if any, else the generator."""
        return self.ema.module if self.ema is not None else self.generator

    def write_grid(self) -> Path:
        """The sample grid of this step: the same noise (and classes) every time."""
        images = generate(
            self.sampler(),
            self.recipe,
            SAMPLE_GRID,
            latent_dim=self.config.latent_dim,
            covid=self.grid_labels,
            generator=torch.Generator().manual_seed(self.config.seed + 12345),
        )
        return save_grid(
            image_grid(to_uint8(images), columns=8),
            self.run / "samples" / f"step_{self.step:06d}.png",
        )

    # ----------------------------------------------------------------- loop
    def train(self, resume: bool = False) -> TrainResult:
        config, fabric = self.config, self.fabric
        rank_zero = fabric.is_global_zero
        if resume:
            state = newest_good_checkpoint(self.run, map_location=self.device)
            if state is not None:
                config.check_resume(GenConfig.from_dict(state["config"]), self.run)
                self.load_state(state)
        elif rank_zero and latest_checkpoint(self.run) is not None:
            raise CxrlabError(
                f"{self.run} already holds a run; pass --resume to continue it or choose another --out"
            )
        metric_names = list(config.metrics)
        loss_names = self._loss_names()
        columns = ["step", "seconds", *loss_names]
        writer = log = tensorboard = None
        if rank_zero:
            self.run.mkdir(parents=True, exist_ok=True)
            config.write(self.run / "config.yaml")
            log = _MetricsLog(self.run / "metrics.csv", columns, keep_through=self.step)
            tensorboard = _tensorboard(self.run / "tensorboard")
            writer = _wandb(config)

        if (
            rank_zero
            and metric_names
            and self.metrics_fn is not None
            and self.step > 0
            and self._is_save_step(self.step)
            and not log.has_metrics(self.step)
        ):  # killed after its checkpoint, before its metrics: a run ends with its metrics
            row = self._run_metrics()
            log.append(row)
            _log_scalars(tensorboard, writer, row)

        sums: dict[str, torch.Tensor] = {}
        counted = 0
        start = time.perf_counter() - self.elapsed
        bar = tqdm(
            total=config.steps, initial=self.step, desc=f"{config.model}", disable=not self.progress
        )
        last_row: dict[str, float] = {}
        self.generator.train()
        if self.discriminator is not None:
            self.discriminator.train()
        for module in self.recipe.extra_modules.values():
            module.train()
        while self.step < config.steps:
            losses = self.train_step()
            self.step += 1
            if self.ema is not None and self.step > self.recipe.ema_start:
                self.ema.update(self.generator, self.step - self.recipe.ema_start)
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value
            counted += 1
            self.elapsed = time.perf_counter() - start
            if self.step % config.log_interval == 0 or self.step == config.steps:
                last_row = {"step": self.step, "seconds": round(self.elapsed, 3)}
                last_row.update(
                    {k: float(v) / counted for k, v in sums.items()}
                )  # one host sync per log
                self._check_losses(last_row, counted)
                sums, counted = {}, 0
                if rank_zero:
                    log.append(last_row)
                    _log_scalars(tensorboard, writer, last_row)
                    bar.set_postfix(
                        {k: f"{v:.3g}" for k, v in last_row.items() if k not in ("step", "seconds")}
                    )
            if rank_zero and (self.step % config.sample_interval == 0 or self.step == config.steps):
                self.write_grid()
            if self._is_save_step(self.step):
                self._check_weights()
                if rank_zero:
                    save_checkpoint(
                        self.run / "checkpoints" / f"step_{self.step:06d}.pt", self.state()
                    )
                    if metric_names and self.metrics_fn is not None:
                        row = self._run_metrics()
                        log.append(row)
                        _log_scalars(tensorboard, writer, row)
                        last_row.update(row)
                fabric.barrier()
            bar.update(1)
        bar.close()
        self.elapsed = time.perf_counter() - start  # with the last save's metrics
        metrics_seconds = 0.0
        if rank_zero:
            metrics_seconds = log.metrics_seconds()
            if tensorboard is not None:
                tensorboard.close()
            if writer is not None:
                writer.finish()
        return TrainResult(self.run, self.step, self.elapsed, last_row, metrics_seconds)

    def _is_save_step(self, step: int) -> bool:
        return step % self.config.save_interval == 0 or step == self.config.steps

    def _divergence(self, what: str) -> CxrlabError:
        checkpoint = latest_checkpoint(self.run)
        kept = (
            f"the last good checkpoint, {checkpoint.name}, is kept"
            if checkpoint is not None
            else "no checkpoint was written"
        )
        return CxrlabError(
            f"{self.run}: training diverged at step {self.step}: {what}; {kept}. Lower the "
            "learning rates (--lr-g/--lr-d), or try --spectral-norm or --ema, in a new --out"
        )

    def _check_losses(self, row: dict, counted: int) -> None:
        """Stop on a non-finite loss (the logged means cover every step since the last log)."""
        bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            first = self.step - counted + 1
            raise self._divergence(f"non-finite {', '.join(bad)} in steps {first}-{self.step}")

    def _check_weights(self) -> None:
        """Never checkpoint NaN weights: the previous checkpoint stays the newest."""
        modules = {"generator": self.generator, "discriminator": self.discriminator}
        modules.update(self.recipe.extra_modules)
        for name, module in modules.items():
            if module is None:
                continue
            for key, tensor in module.state_dict().items():
                if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    raise self._divergence(f"non-finite weights in the {name} ({key})")

    def _run_metrics(self) -> dict[str, float]:
        began = time.perf_counter()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            values = self.metrics_fn(self.sampler(), self.step)
        return {
            "step": self.step,
            "seconds": round(self.elapsed, 3),
            **values,
            "metrics_seconds": round(time.perf_counter() - began, 3),
        }

    def _loss_names(self) -> list[str]:
        if self.recipe.train_step is not None:
            return list(self.recipe.loss_names)
        if self.recipe.loss == "elbo":
            return ["loss", "reconstruction", "kl"]
        names = ["d_loss", "g_loss", "d_real", "d_fake"]
        return names + (["gp"] if self.recipe.gp_weight else [])


class _MetricsLog(RunLog):
    """metrics.csv: losses every log interval, metric values at save intervals."""

    def __init__(self, path: Path, columns: list[str], keep_through: int) -> None:
        super().__init__(path, columns, keep_through=keep_through, key="step")

    def has_metrics(self, step: int) -> bool:
        """Whether the metrics of ``step`` were logged (their row has metrics_seconds)."""
        return any(
            int(float(row["step"])) == step and str(row.get("metrics_seconds") or "") != ""
            for row in self.rows
        )

    def metrics_seconds(self) -> float:
        """Seconds spent on metrics in the run so far (resumed parts included)."""
        return sum(float(row.get("metrics_seconds") or 0) for row in self.rows)


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but stay usable without it
        return None
    return SummaryWriter(log_dir=str(folder))


def _wandb(config: GenConfig):
    if not config.wandb:
        return None
    try:
        import wandb
    except ImportError as error:
        raise CxrlabError("--wandb needs the wandb package: pip install wandb") from error
    return wandb.init(project="cxrlab", name=Path(config.out).name, config=config.as_dict())


def _log_scalars(tensorboard, wandb_run, row: dict) -> None:
    step = int(row["step"])
    values = {k: v for k, v in row.items() if k not in ("step",) and isinstance(v, (int, float))}
    if tensorboard is not None:
        for name, value in values.items():
            tensorboard.add_scalar(name, value, step)
    if wandb_run is not None:
        wandb_run.log(values, step=step)


def _load_optimizer(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load an optimizer's state but keep this run's kernel choice (``foreach``/``fused``,
    which ``load_state_dict`` would take from the checkpoint's param groups)."""
    kernels = [
        {k: group[k] for k in ("foreach", "fused") if k in group}
        for group in optimizer.param_groups
    ]
    optimizer.load_state_dict(state)
    for group, chosen in zip(optimizer.param_groups, kernels, strict=True):
        group.update(chosen)


def _plain_dropout(*modules: nn.Module | None) -> None:
    """Swap the families' CPU-fast :class:`~cxrlab.gen.models.layers.Dropout` for
    ``nn.Dropout`` (``speedups=False``: the baseline of benchmarks/bench_gen.py)."""
    from cxrlab.gen.models.layers import Dropout

    for module in modules:
        for parent in [] if module is None else list(module.modules()):
            for name, child in parent.named_children():
                if isinstance(child, Dropout):
                    setattr(parent, name, nn.Dropout(child.p))


def _fabric(config: GenConfig):
    return make_fabric(config.device, config.devices, config.precision)


def _run(
    fabric, config: GenConfig, resume: bool, progress: bool, metrics_fn: MetricsFn | None
) -> TrainResult:
    trainer = GenTrainer(config, fabric, progress=progress, metrics_fn=metrics_fn)
    return trainer.train(resume=resume)


def train_generator(
    config: GenConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    metrics_fn: MetricsFn | None = None,
) -> TrainResult:
    """Train (or, with ``resume``, continue) a generative model as ``config`` says."""
    check_output(config.out, kind=outputs.GENERATOR_RUN, inputs=[config.data])
    fabric = _fabric(config)
    return fabric.launch(_run, config, resume, progress, metrics_fn)
