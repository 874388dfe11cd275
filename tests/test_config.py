import pytest

from fleet.config import load_server_config
from wardsight.device_config import load_device_config
from wardsight.errors import ConfigError
from wardsight.paths import data_dir


def test_defaults_and_data_dir_resolution(tmp_path):
    assert data_dir(None, {"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "wardsight"
    assert data_dir(None, {"WARDSIGHT_DATA_DIR": str(tmp_path / "x"), "XDG_DATA_HOME": "/nope"}) == tmp_path / "x"
    assert data_dir(tmp_path / "y", {"WARDSIGHT_DATA_DIR": "/nope"}) == tmp_path / "y"
    config = load_server_config(tmp_path, None, {})
    assert config.database == tmp_path / "fleet.db" and config.host == "127.0.0.1"


def test_file_then_environment_overrides(tmp_path):
    path = tmp_path / "device.toml"
    path.write_text('server_url = "http://10.0.0.5:8765"\nthreads = 3\n[occupancy]\nstable_seconds = 2.5\n')
    env = {"WARDSIGHT_DEVICE_THREADS": "4", "WARDSIGHT_DEVICE_OCCUPANCY__MIN_SCORE": "0.6"}
    config = load_device_config(tmp_path, path, env)
    assert config.threads == 4 and config.occupancy.stable_seconds == 2.5 and config.occupancy.min_score == 0.6
    assert config.server_url == "http://10.0.0.5:8765"
    # <data dir>/device.toml is picked up when no path is given
    (tmp_path / "device.toml").write_text("threads = 1\n")
    assert load_device_config(tmp_path, None, {}).threads == 1


@pytest.mark.parametrize(
    "text, env, message",
    [
        ("thread = 2\n", {}, "unknown key 'thread'"),
        ("[occupancy]\nstable_second = 2\n", {}, "unknown key 'occupancy.stable_second'"),
        ("", {"WARDSIGHT_DEVICE_SERVERURL": "x"}, "unknown key 'serverurl'"),
        ("threads = 0\n", {}, "invalid value for 'threads'"),
        ("threads = [\n", {}, "not valid TOML"),
        ('server_url = "ftp://x"\n', {}, "invalid value for 'server_url'"),
        ('[[privacy_regions]]\nname = "door"\npolygon = [[0, 0], [1.5, 0], [0, 1]]\n', {}, "privacy_regions.0.polygon"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, env, message):
    path = tmp_path / "device.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_device_config(tmp_path, path, env)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_server_config(tmp_path, tmp_path / "nope.toml", {})


def test_env_scalars_stay_strings_for_string_fields(tmp_path):
    config = load_device_config(tmp_path, None, {"WARDSIGHT_DEVICE_NAME": "101", "WARDSIGHT_DEVICE_THREADS": "3"})
    assert config.name == "101" and config.threads == 3
    polygons = '[{"name": "door", "polygon": [[0, 0], [1, 0], [0, 1]]}]'
    assert len(load_device_config(tmp_path, None, {"WARDSIGHT_DEVICE_PRIVACY_REGIONS": polygons}).privacy_regions) == 1


def test_non_utf8_config_and_relative_database(tmp_path):
    path = tmp_path / "device.toml"
    path.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_device_config(tmp_path, path, {})
    (tmp_path / "server.toml").write_text('database = "db/fleet.db"\n')
    assert load_server_config(tmp_path, None, {}).database == tmp_path / "db" / "fleet.db"


@pytest.mark.parametrize("text, message", [
    ('[occupancy]\npatient_zone = "bed-1"\n', "occupancy.patient_zone names zone 'bed-1'"),
    ('[hand_hygiene]\npatient_zones = ["Bed"]\n', "hand_hygiene.patient_zones names zone 'Bed'"),
    ('[[zones]]\nname = "d"\nkind = "dispenser"\npolygon = [[0, 0], [1, 0], [1, 1]]\nmin_keypoints = 3\n',
     "only 2 keypoints count"),
    ("[occupancy]\nvisiting_hours = [8, 8]\n", "two different hours"),
])  # fmt: skip
def test_config_references_are_checked(tmp_path, text, message):
    path = tmp_path / "device.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_device_config(tmp_path, path, {})
