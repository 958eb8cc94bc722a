"""What a stage is (`Stage`), and the one place a composed config becomes that stage's typed settings
(`Stage.parse`). Pure Python: nothing here imports torch, Lightning or NeMo, so a bad value is refused in well
under a second; the runtime pieces a stage names (its model class, its dataset) are imported only to run it."""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nemo_ext.errors import ConfigError
from nemo_ext.settings import fields as check
from nemo_ext.settings.data import DataSettings
from nemo_ext.settings.exp_manager import ExpManagerSettings
from nemo_ext.settings.faults import FaultSettings
from nemo_ext.settings.model_keys import OUR_KEYS, ModelFamily
from nemo_ext.settings.run import (
    RunSettings,
    check_tiny_fixtures,
    refuse_secrets,
    require_existing_paths,
    require_writable_folder,
    select,
)
from nemo_ext.settings.telemetry import TelemetrySettings
from nemo_ext.settings.trainer import TrainerSettings
from nemo_ext.settings.whisper import fold_whisper_shortcut

# Top-level keys of every stage that builds a model; the `whisper` shortcut is folded into `model.whisper` first.
MODEL_STAGE_KEYS = (
    "name",
    "init_from_ptl_ckpt",
    "model_architecture",
    "codecmodel_path",
    "dry_run",
    "resume",
    "seed",
    "tiny_root",
    "data",
    "trainer",
    "exp_manager",
    "faults",
    "model",
)


MAGPIETTS_DATASET = "nemo.collections.tts.data.text_to_speech_dataset.MagpieTTSDataset"
TRAINING_PATHS = ("init_from_ptl_ckpt", "codecmodel_path", "data.train_manifest", "data.val_manifest")
TRAINING_MANIFESTS = ("data.train_manifest", "data.val_manifest")


class Loop(enum.Enum):
    FIT = "fit"  # trainer.fit: GRPO, DPO
    GENERATE = "generate"  # trainer.test over the items still to generate: DataGen
    NONE = "none"  # no model: the pair stage


@dataclass(frozen=True)
class Stage:
    """A stage's declaration: everything that differs between stages, read by the shared code that runs them."""

    name: str
    summary: str
    loop: Loop
    parse_algorithm: Callable[[Mapping], object]  # `model` node (or the pair stage's root) -> typed settings
    family: ModelFamily | None = None
    nemo_class: str | None = None  # the NeMo class whose `model.*` keys the stage reads
    nemo_keys: frozenset[str] = frozenset()  # what that class reads beyond its family's
    our_keys: frozenset[str] = frozenset()  # this project's keys beyond OUR_KEYS
    # Keys refused with the reason (NeMo's keys read under another name, keys this family's step cannot honour).
    refused_keys: Mapping[str, str] = field(default_factory=dict)
    deliberate_defaults: Mapping[str, str] = field(default_factory=dict)  # key -> why the YAML differs from NeMo
    model_class: str | None = None  # "module:Class", imported when the stage runs
    # "module:function" running the stage's loop from its settings: (StageSettings, callbacks) -> StageResult.
    # None: the shared trainer.fit (nemo_ext/recipes/run_stage.py).
    runner: str | None = None
    dataset: str | None = None  # NeMo's dataset class (`_target_`)
    dataset_node: str = "datasets"  # under which key the model class reads a dataset's config
    data_keys: tuple[str, ...] = ()  # the manifest keys of `data`
    required_paths: tuple[str, ...] = ()
    manifests: tuple[str, ...] = ()
    preference_pairs: bool = False  # manifests in the DPO layout (chosen / rejected lines)
    absolute_audio_paths: bool = True  # else relative to data.audio_dir (NeMo's DPO dataset joins them)
    reference_policy: bool = False  # the init checkpoint is also the frozen reference (reference_model_ckpt_path)
    unused_model_keys: tuple[str, ...] = ()  # accepted and checked, dropped before NeMo builds the model
    # GRPO: the weight keys of the reward terms registered for the family are model keys (nemo_ext/grpo/).
    reward_terms: bool = False
    telemetry: bool = True  # the stage has a `telemetry` block
    cross_checks: tuple[Callable[[StageSettings], None], ...] = ()
    top_level_keys: tuple[str, ...] = MODEL_STAGE_KEYS

    @property
    def builds_a_model(self) -> bool:
        return self.loop is not Loop.NONE

    def allowed_model_keys(self) -> frozenset[str]:
        keys = self.family.keys | self.nemo_keys | OUR_KEYS | self.our_keys
        if self.reward_terms:
            from nemo_ext.grpo.reward_terms import reward_terms

            keys |= {term.weight_key for term in reward_terms(self.family.name)}
        return keys - set(self.refused_keys)

    def check_model_keys(self, model: Mapping) -> None:
        """Refuse a `model.*` key that neither the stage's NeMo class, its model family nor this project reads."""
        allowed = self.allowed_model_keys()
        for key in model:
            if key in allowed:
                continue
            if key in self.refused_keys:
                raise ConfigError(f"model.{key}", model[key], f"unset: {self.refused_keys[key]}")
            raise ConfigError(
                f"model.{key}",
                model[key],
                f"a key that {self.nemo_class}, {self.family.name} or this recipe reads (no code reads `{key}`)"
                f"{check.did_you_mean(key, allowed)}",
            )

    def parse(self, cfg: DictConfig | Mapping) -> StageSettings:
        """The stage's typed settings from a composed config, every block checked; raises ConfigError (one line:
        key, value, what is allowed) before anything is built or written. `dry_run=true` stops after this."""
        return _parse(self, cfg)

    def run(self, cfg: DictConfig | Mapping, callbacks: list | None = None):
        """Parse, then run the stage (programmatic use; the entry points do the same). None after a dry run."""
        from nemo_ext.recipes.run_stage import run_stage

        return run_stage(self, cfg, callbacks)


@dataclass(frozen=True)
class StageSettings:
    """One stage's settings, parsed once at the recipe's edge and passed down: models, callbacks, the run folder
    and the dry run read these, never the config nodes again."""

    stage: Stage
    run: RunSettings
    algorithm: object  # GRPOSettings, DataGenSettings, DPOSettings or PairStageSettings
    config: DictConfig  # the validated, resolved config (read-only); NeMo's classes read their keys from it
    data: DataSettings | None = None
    trainer: TrainerSettings | None = None
    exp_manager: ExpManagerSettings | None = None
    telemetry: TelemetrySettings | None = None
    faults: FaultSettings | None = None


def _resolved_container(cfg: DictConfig | Mapping) -> dict:
    try:
        return check.plain(cfg if OmegaConf.is_config(cfg) else OmegaConf.create(dict(cfg)))
    except OmegaConfBaseException as error:
        key = str(getattr(error, "full_key", "") or "config")
        raise ConfigError(key, "${...}", f"an interpolation that resolves ({str(error).splitlines()[0]})") from None


def _parse(stage: Stage, cfg: DictConfig | Mapping) -> StageSettings:
    container = _resolved_container(cfg)
    refuse_secrets(container)
    if not stage.builds_a_model:
        check.refuse_unknown_keys(container, stage.top_level_keys, "", f"of the {stage.name} stage")
        run = RunSettings.parse(container, loads_models=False)
        check_tiny_fixtures(run.tiny_root)
        algorithm = stage.parse_algorithm(container)
        output = algorithm.output_dir or os.path.join(algorithm.datagen_run, "pairs")
        require_writable_folder("output_dir" if algorithm.output_dir else "datagen_run", output)
        return StageSettings(stage=stage, run=run, algorithm=algorithm, config=_read_only(container))

    container = fold_whisper_shortcut(container)
    keys = stage.top_level_keys + (("telemetry",) if stage.telemetry else ())
    check.refuse_unknown_keys(container, keys, "", f"of the {stage.name} stage")
    run = RunSettings.parse(container, loads_models=True)
    check_tiny_fixtures(run.tiny_root)  # before the paths inside it are checked one by one
    trainer = TrainerSettings.parse(container.get("trainer"))
    exp_manager = ExpManagerSettings.parse(container.get("exp_manager"))
    faults = FaultSettings.parse(container.get("faults"))
    data = DataSettings.parse(container.get("data"), stage.data_keys)
    learns = stage.loop is Loop.FIT
    telemetry = TelemetrySettings.parse(container.get("telemetry"), learns) if stage.telemetry else None
    model = check.mapping("model", container.get("model"), none=False)
    stage.check_model_keys(model)
    algorithm = stage.parse_algorithm(model)
    # Values the settings resolved (DataGen's `load_whisper_model: null`) are what NeMo's class reads too.
    container["model"].update(getattr(algorithm, "resolved_model_keys", {}))
    settings = StageSettings(
        stage=stage,
        run=run,
        algorithm=algorithm,
        config=_read_only(container),
        data=data,
        trainer=trainer,
        exp_manager=exp_manager,
        telemetry=telemetry,
        faults=faults,
    )
    for cross_check in stage.cross_checks:
        cross_check(settings)
    require_existing_paths(container, stage.required_paths)
    require_writable_folder("exp_manager.exp_dir", exp_manager.node.get("exp_dir") or "nemo_experiments")
    trainer.check_precision_runs(lambda: _alignment_loss_scale(settings) if stage.loop is Loop.FIT else 0.0)
    _check_manifests(stage, container, data)
    return settings


def _alignment_loss_scale(settings: StageSettings) -> float:
    """model.alignment_loss_scale as the model will see it: the stage's override, else the architecture's."""
    model = settings.config.model
    if "alignment_loss_scale" in model:
        return model.alignment_loss_scale
    from nemo_ext.architecture import load_architecture  # reads the checkpoint: only for bf16-true on a CPU

    return load_architecture(settings.run).get("alignment_loss_scale", 0.0)


def _check_manifests(stage: Stage, container: Mapping, data: DataSettings) -> None:
    from nemo_ext.manifests import check_manifest

    checked = set()
    for key in stage.manifests:
        path = select(container, key)
        if path in checked:
            continue
        checked.add(path)
        summary = check_manifest(
            key,
            path,
            min_duration=data.min_duration,
            max_duration=data.max_duration,
            audio_dir=None if stage.absolute_audio_paths else data.audio_dir,
            preference_pairs=stage.preference_pairs,
        )
        if summary.dropped:
            print(
                f"[magpie] {key}: {summary.dropped} of {summary.lines} lines last outside data.min_duration.."
                f"data.max_duration ({data.min_duration}..{data.max_duration}) and are skipped; {summary.kept} remain",
                flush=True,
            )


def _read_only(container: Mapping) -> DictConfig:
    node = OmegaConf.create(container)
    OmegaConf.set_readonly(node, True)
    return node


def rank_from_environment(devices_per_node: int = 1) -> int:
    """This process's global rank as its launcher set it, before any trainer exists: torchrun's RANK, srun's
    SLURM_PROCID, or Lightning's own launcher, which starts the other ranks of a node with LOCAL_RANK and NODE_RANK
    (NODE_RANK x devices_per_node + LOCAL_RANK). 0 for a process no launcher started."""
    for name in ("RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    local = os.environ.get("LOCAL_RANK", "")
    if local.isdigit():
        node = os.environ.get("NODE_RANK", "")
        return (int(node) if node.isdigit() else 0) * devices_per_node + int(local)
    return 0
