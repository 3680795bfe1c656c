from pathlib import Path

import pytest

from llamaman.config import Config, ConfigError

BASE = {"LLAMAMAN_NODE_NAME": "srv1"}


def config(**env: str) -> Config:
    return Config.from_env({**BASE, **env})


def test_defaults_follow_the_readme():
    cfg = config()
    assert cfg.public_ports.start == 8000 and cfg.public_ports.end == 8020
    assert cfg.internal_ports.start == 9000 and cfg.internal_ports.end == 9020
    assert cfg.proxy_port == 42069 and cfg.ui_port == 5000
    assert cfg.max_models == 0 and cfg.idle_timeout_min == 0
    assert cfg.health_check_timeout == 3 and cfg.model_load_timeout == 300 and cfg.request_timeout == 300
    assert cfg.llama_network == "llamaman-net" and cfg.container_prefix == "llamaman-"
    assert cfg.llama_host_addr == "localhost" and cfg.llama_image is None
    assert cfg.in_docker is None and cfg.gpu_type is None and cfg.gpu_devices is None
    assert cfg.database_url is None and cfg.secret_key is None
    assert not cfg.cluster_enabled and cfg.cluster_online_window_s == 45


def test_bare_metal_paths_default_under_the_working_directory():
    cfg = config()
    assert cfg.data_dir == Path("./data").absolute()
    assert cfg.models_dir == Path("./models").absolute()
    assert cfg.logs_dir == cfg.data_dir / "logs"
    assert cfg.recordings_dir == cfg.data_dir / "request_log"
    assert cfg.host_models_dir == cfg.models_dir and cfg.host_logs_dir == cfg.logs_dir


def test_container_paths_come_from_the_environment():
    cfg = config(DATA_DIR="/data", MODELS_DIR="/models", LOGS_DIR="/tmp/llama-logs",
                 HOST_MODELS_DIR="/srv/models")
    assert cfg.recordings_dir == Path("/data/request_log")
    assert cfg.logs_dir == Path("/tmp/llama-logs")
    assert cfg.host_models_dir == Path("/srv/models") and cfg.host_logs_dir == Path("/tmp/llama-logs")


def test_node_name_is_required():
    with pytest.raises(ConfigError) as err:
        Config.from_env({})
    assert err.value.variable == "LLAMAMAN_NODE_NAME"
    assert "LLAMAMAN_NODE_NAME=srv1" in str(err.value)


@pytest.mark.parametrize("env, variable", [
    ({"PORT_RANGE_START": "abc"}, "PORT_RANGE_START"),
    ({"PORT_RANGE_START": "8030"}, "PORT_RANGE_END"),
    ({"INTERNAL_PORT_RANGE_START": "8010", "INTERNAL_PORT_RANGE_END": "8030"}, "INTERNAL_PORT_RANGE_START"),
    ({"LLAMAMAN_PROXY_PORT": "8005"}, "LLAMAMAN_PROXY_PORT"),
    ({"LLAMAMAN_PROXY_PORT": "70000"}, "LLAMAMAN_PROXY_PORT"),
    ({"LLAMAMAN_UI_PORT": "42069"}, "LLAMAMAN_PROXY_PORT"),
    ({"LLAMAMAN_MAX_MODELS": "-1"}, "LLAMAMAN_MAX_MODELS"),
    ({"MODEL_LOAD_TIMEOUT": "soon"}, "MODEL_LOAD_TIMEOUT"),
    ({"LLAMAMAN_IN_DOCKER": "maybe"}, "LLAMAMAN_IN_DOCKER"),
    ({"GPU_TYPE": "voodoo"}, "GPU_TYPE"),
    ({"LLAMA_GPU_DEVICES": "0,x"}, "LLAMA_GPU_DEVICES"),
    ({"LLAMA_GPU_DEVICES": "1,1"}, "LLAMA_GPU_DEVICES"),
    ({"LLAMAMAN_RUNTIME": "k8s"}, "LLAMAMAN_RUNTIME"),
    ({"LLAMAMAN_NODE_NAME": "bad/name"}, "LLAMAMAN_NODE_NAME"),
])
def test_bad_values_name_the_variable(env, variable):
    with pytest.raises(ConfigError) as err:
        config(**env)
    assert err.value.variable == variable
    assert str(err.value).startswith(variable + ":")


def test_typed_values_are_parsed():
    cfg = config(LLAMAMAN_IN_DOCKER="false", GPU_TYPE="ROCM", LLAMA_GPU_DEVICES="0,2",
                 LLAMAMAN_MAX_MODELS="2", REQUEST_TIMEOUT="12.5", CLUSTER_ENABLED="yes",
                 CLUSTER_SECRET="s3cret", CLUSTER_NODE_ONLINE_WINDOW_S="90")
    assert cfg.in_docker is False and cfg.gpu_type == "rocm" and cfg.gpu_devices == (0, 2)
    assert cfg.max_models == 2 and cfg.request_timeout == 12.5
    assert cfg.cluster_enabled and cfg.cluster_online_window_s == 90


def test_cluster_without_secret_is_off_with_a_warning():
    cfg = config(CLUSTER_ENABLED="true")
    assert not cfg.cluster_enabled
    assert any("CLUSTER_SECRET" in w for w in cfg.warnings)


def test_all_gpus_keyword():
    assert config(LLAMA_GPU_DEVICES="all").gpu_devices is None
