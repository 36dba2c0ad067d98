"""TrainConfig files: formats, defaults, and error messages that name the file, key and value."""

from __future__ import annotations

import pytest
import yaml

from mgoe.errors import MgoeError
from mgoe.train.config import TrainConfig, config_template, load_config, resolve_config


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_toml_json_give_the_same_config(tmp_path):
    yaml_file = write(tmp_path, "a.yaml", "model: mmoe\nlr: 1e-3\ntask_weights: [1, 2]\n"
                      "model_config: {embedding_dim: 32}\nnum_threads: 2\n")
    toml_file = write(tmp_path, "a.toml", 'model = "mmoe"\nlr = 0.001\ntask_weights = [1, 2]\n'
                      "num_threads = 2\n[model_config]\nembedding_dim = 32\n")
    json_file = write(tmp_path, "a.json", '{"model": "mmoe", "lr": 0.001, "task_weights": [1, 2],'
                      ' "model_config": {"embedding_dim": 32}, "num_threads": 2}')
    configs = [load_config(p) for p in (yaml_file, toml_file, json_file)]
    assert configs[0] == configs[1] == configs[2]
    c = configs[0]
    assert c.lr == 0.001 and isinstance(c.lr, float)  # YAML 1.1 reads 1e-3 as a string
    assert c.task_weights == [1.0, 2.0] and c.model_config == {"embedding_dim": 32}
    assert c.batch_size == 1024 and c.patience == 2 and c.early_stopping_metric == "auc"


def test_empty_file_is_the_default(tmp_path):
    assert load_config(write(tmp_path, "empty.yaml", "")) == TrainConfig()
    assert resolve_config(None) == TrainConfig()


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "run.yaml", "epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(MgoeError) as err:
        load_config(path)
    assert "'learning_rate'" in str(err.value) and str(path) in str(err.value)
    assert "lr" in str(err.value)  # the known keys are listed


@pytest.mark.parametrize(("text", "key", "expected", "value"), [
    ('epochs = "ten"\n', "epochs", "an integer", "'ten'"),
    ("batch_size = 1.5\n", "batch_size", "an integer", "1.5"),
    ("flush_denormal = 1\n", "flush_denormal", "true or false", "1"),
    ('task_weights = ["a"]\n', "task_weights", "a list of numbers or null", "['a']"),
    ("model_config = 3\n", "model_config", "a mapping", "3"),
    ("lr = true\n", "lr", "a number", "True"),
])
def test_wrong_type_names_key_type_value_and_file(tmp_path, text, key, expected, value):
    path = write(tmp_path, "run.toml", text)
    with pytest.raises(MgoeError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and f"{key} must be {expected}, got {value}" in message


@pytest.mark.parametrize(("values", "fragment"), [
    ({"batch_size": 0}, "batch_size must be at least 1"),
    ({"lr": -1.0}, "lr must be positive"),
    ({"early_stopping_metric": "accuracy"}, "early_stopping_metric must be one of auc, gauc, logloss"),
    ({"patience": -1}, "patience must be >= 0"),
    ({"device": "gpu"}, "device must be"),
    ({"adam_betas": [0.9]}, "adam_betas must be two numbers"),
])
def test_invalid_values(values, fragment):
    with pytest.raises(MgoeError, match=fragment):
        TrainConfig.from_dict(values)


def test_task_dependent_checks():
    config = TrainConfig(task_weights=[1.0, 2.0, 3.0], early_stopping_metric="auc:like")
    with pytest.raises(MgoeError, match="task_weights has 3 values but the dataset has 2 tasks"):
        config.check_tasks(["click", "buy"])
    with pytest.raises(MgoeError, match="names task 'like'"):
        TrainConfig(early_stopping_metric="auc:like").check_tasks(["click", "buy"])
    assert TrainConfig().weights(3) == [1.0, 1.0, 1.0]


def test_unparseable_and_unknown_format(tmp_path):
    with pytest.raises(MgoeError, match="could not be parsed"):
        load_config(write(tmp_path, "bad.yaml", "epochs: [1\n"))
    with pytest.raises(MgoeError, match="unknown format '.ini'"):
        load_config(write(tmp_path, "run.ini", "epochs=1"))
    with pytest.raises(MgoeError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(MgoeError, match="expected a mapping"):
        load_config(write(tmp_path, "list.yaml", "- 1\n"))


def test_template_round_trips_and_documents_every_field(tmp_path):
    template = config_template()
    assert TrainConfig.from_dict(yaml.safe_load(template)) == TrainConfig()
    for name in TrainConfig.__dataclass_fields__:
        assert f"\n{name}:" in template
    assert template.count("\n# ") == len(TrainConfig.__dataclass_fields__)


def test_replace_overrides_and_revalidates():
    config = TrainConfig().replace(model="ple", epochs=3, seed=None)
    assert (config.model, config.epochs, config.seed) == ("ple", 3, 0)
    with pytest.raises(MgoeError, match="epochs must be at least 1"):
        TrainConfig().replace(epochs=0)
