"""Scenario files: loading, validation errors that name file and field, and the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from keys.errors import UserError
from lab.scenario import load_scenario, shipped_scenarios

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """
name = "tiny"
seed = 5
[home_agent]
address = "2001:db8:1::1"
prefixes = ["2001:db8:1::/64", "2001:db8:100::/64"]
[[correspondent]]
name = "cn1"
address = "2001:db8:3::5"
[[mobile_node]]
name = "mn1"
home_address = "2001:db8:1::100"
[[event]]
at = 1
node = "mn1"
do = "move"
care_of_address = "2001:db8:2::1"
[[event]]
at = 2
node = "mn1"
do = "session"
correspondent = "cn1"
procedure = "4.1"
"""


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_load_shipped_by_name_and_defaults():
    s = load_scenario("demo")
    assert s.name == "demo" and len(s.mobile_nodes) == 3 and len(s.correspondents) == 2
    assert {m.home_bu for m in s.mobile_nodes} == {"5.2.1", "5.2.2", "rfc3776"}
    base = load_scenario("baseline")
    assert [m.privacy for m in base.mobile_nodes] == [False]


def test_load_from_path_with_defaults(tmp_path):
    s = load_scenario(str(write(tmp_path, MINIMAL)))
    assert s.seed == 5 and s.mobile_nodes[0].home_bu == "5.2.1" and s.mobile_nodes[0].privacy
    assert s.events[0].at == 1.0 and s.events[1].data == 2


@pytest.mark.parametrize("change,where", [
    (('home_address = "2001:db8:1::100"', 'home_address = "not-an-address"'),
     "[[mobile_node]] #1 home_address"),
    (('home_address = "2001:db8:1::100"', 'home_address = "2001:db8:9::100"'),
     "[[mobile_node]] #1 home_address"),
    (('procedure = "4.1"', 'procedure = "9.9"'), "[[event]] #2 procedure"),
    (('correspondent = "cn1"\nprocedure', 'correspondent = "cn7"\nprocedure'),
     "[[event]] #2 correspondent"),
    (('at = 2', 'at = 0.5'), "[[event]] #2 at"),
    (('do = "move"', 'do = "fly"'), "[[event]] #1 do"),
    (('prefixes = ["2001:db8:1::/64", "2001:db8:100::/64"]', 'prefixes = ["2001:db8:1::/48"]'),
     "[home_agent] prefixes"),
    (('seed = 5', 'seed = "five"'), "top level seed"),
    (('name = "mn1"', 'name = "mn1"\nks = "zz"'), "[[mobile_node]] #1 ks"),
    (('name = "mn1"', 'name = "mn1"\ncolour = "red"'), "[[mobile_node]] #1 colour"),
])
def test_validation_errors_name_file_and_field(tmp_path, change, where):
    assert_error_names(write(tmp_path, MINIMAL.replace(*change)), where)


def assert_error_names(path: Path, where: str) -> None:
    """Loading `path` fails with one line that names the file and `where` (table and field)."""
    with pytest.raises(UserError) as err:
        load_scenario(str(path))
    message = str(err.value)
    assert str(path) in message and where in message and "\n" not in message


def test_key_never_echoed(tmp_path):
    path = write(tmp_path, MINIMAL.replace('name = "mn1"', 'name = "mn1"\nks = "00112233gg"'))
    with pytest.raises(UserError) as err:
        load_scenario(str(path))
    assert "00112233" not in str(err.value)


def test_unknown_scenario_and_bad_toml(tmp_path):
    with pytest.raises(UserError, match="unknown scenario 'nope'"):
        load_scenario("nope")
    with pytest.raises(UserError, match="not valid TOML"):
        load_scenario(str(write(tmp_path, "[[event]\n")))
    with pytest.raises(UserError, match="no such scenario file"):
        load_scenario(str(tmp_path / "missing.toml"))


def test_procedure_needs_capable_node(tmp_path):
    from lab.run import build
    text = MINIMAL.replace('home_address = "2001:db8:1::100"',
                           'home_address = "2001:db8:1::100"\nhome_bu = "rfc3776"')
    with pytest.raises(UserError, match="needs a privacy node"):
        build(load_scenario(str(write(tmp_path, text))))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitor.cli", "lab", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_list_and_run(tmp_path):
    listed = cli("list")
    assert listed.returncode == 0
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert names == shipped_scenarios() and "demo" in names
    scenario = write(tmp_path, MINIMAL)
    run = cli("run", str(scenario), "-o", str(tmp_path / "out"), "--seed", "3")
    assert run.returncode == 0, run.stderr
    truth = json.loads((tmp_path / "out" / "truth.json").read_text())
    assert truth["seed"] == 3 and truth["scenario"] == "tiny"
    assert len(truth["correspondent_bindings"]) == 1 and len(truth["home_bindings"]) == 1


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    bad = cli("run", "nope", "-o", str(tmp_path))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("mip6mon: error: unknown scenario")
    assert "Traceback" not in bad.stderr
    scenario = write(tmp_path, MINIMAL.replace('at = 1\n', 'at = "soon"\n'))
    bad = cli("run", str(scenario), "-o", str(tmp_path / "o"))
    assert bad.returncode == 2 and "[[event]] #1 at" in bad.stderr


def test_unaware_correspondent_gets_plain_bu(tmp_path):
    """PROFILE.md: a correspondent that ignores the P flag sends no privacy keygen token; the
    mobile node then registers with the plain RFC 6275 BU (HAO = home address)."""
    from lab.run import build
    text = MINIMAL.replace('address = "2001:db8:3::5"',
                           'address = "2001:db8:3::5"\nprivacy_aware = false')
    out = build(load_scenario(str(write(tmp_path, text))))
    (binding,) = out.truth["correspondent_bindings"]
    assert binding["pseudo_home_address"] is None
    hot = next(f for f in out.frames if f.what == "HoT" and f.path == "ha-cn")
    assert len(hot.data) == 14 + 40 + 24                  # no option 18, no padding
    bu = out.frames[binding["frame"] - 1].data
    assert bytes([0xC9, 16]) + bytes.fromhex("20010db8000100000000000000000100") in bu
    aware = build(load_scenario(str(write(tmp_path, MINIMAL))))
    assert aware.truth["correspondent_bindings"][0]["pseudo_home_address"] is not None


def test_more_validation(tmp_path):
    for change, where in [
        (('care_of_address = "2001:db8:2::1"', 'care_of_address = "2001:db8:100::1"'),
         "[[event]] #1 care_of_address"),
        (('procedure = "4.1"', 'procedure = "4.1"\ndata = -1'), "[[event]] #2 data"),
    ]:
        path = write(tmp_path, MINIMAL.replace(*change))
        with pytest.raises(UserError, match=__import__("re").escape(where)):
            load_scenario(str(path))
    with pytest.raises(UserError, match="not a file"):
        load_scenario(str(tmp_path))


def test_unwritable_output_is_a_user_error(tmp_path):
    from lab.run import run_scenario
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write lab output"):
        run_scenario(load_scenario("baseline"), blocker / "out")


def test_key_index_counter(tmp_path):
    """draft 5.1.4 with a counter instead of the ESP sequence number: i = the number of Home BUs
    the node has sent (from 1; lost ones and de-registrations count), written to the keyring."""
    import ipaddress

    from keys import formulas as F
    from keys.keyring import load_keyring
    from lab.run import run_scenario
    text = MINIMAL.replace('home_address = "2001:db8:1::100"',
                           'home_address = "2001:db8:1::100"\nkey_index = "counter"\n'
                           'phoa_cipher = "aes-ecb-trunc"')
    text += ('[[event]]\nat = 5\nnode = "mn1"\ndo = "move"\ncare_of_address = "2001:db8:4::1"\n'
             'lose_bu = true\n[[event]]\nat = 9\nnode = "mn1"\ndo = "return-home"\n'
             '[[event]]\nat = 12\nnode = "mn1"\ndo = "move"\ncare_of_address = "2001:db8:5::1"\n')
    truth = run_scenario(load_scenario(str(write(tmp_path, text))), tmp_path / "o")
    ring = load_keyring(tmp_path / "o" / "keyring.toml")
    (node,) = ring.mobile_nodes
    assert node.key_index == "counter" and node.phoa_cipher == "aes-ecb-trunc"
    home_bus = [int(n) for n, f in truth["frames"].items() if f["what"].startswith("Home BU")]
    assert len(home_bus) == 5                       # move, lost + retransmitted, de-reg, move
    pseudos = [h["pseudo_home_address"] for h in truth["home_bindings"]]
    assert pseudos[2] is None                       # de-registration
    for h in truth["home_bindings"]:
        if h["pseudo_home_address"] is None:
            continue
        i = home_bus.index(h["frame"]) + 1
        assert h["pseudo_home_address"] == F.routable_pseudo_home_address(
            F.dynamic_key(node.kph.value, i), node.home_address, "2001:db8:100::/64",
            "aes-ecb-trunc")
    assert [home_bus.index(h["frame"]) + 1 for h in truth["home_bindings"]] == [1, 3, 4, 5]
    assert ipaddress.IPv6Address(pseudos[-1]) in ipaddress.IPv6Network("2001:db8:100::/64")


# --- the fields crowds added (lab/crowd.py writes them; a person may too) -----------------------

TWO_AGENTS = MINIMAL.replace('''[home_agent]
address = "2001:db8:1::1"
prefixes = ["2001:db8:1::/64", "2001:db8:100::/64"]''', '''[[home_agent]]
name = "ha1"
address = "2001:db8:1::1"
prefixes = ["2001:db8:1::/64", "2001:db8:100::/64"]
[[home_agent]]
name = "ha2"
address = "2001:db8:11::1"
prefixes = ["2001:db8:11::/64", "2001:db8:110::/64"]''').replace(
    'home_address = "2001:db8:1::100"', 'home_address = "2001:db8:11::100"\nhome_agent = "ha2"')


def test_new_fields_load(tmp_path):
    text = TWO_AGENTS.replace('seed = 5', 'seed = 5\ncare_of_iid = "stable"\nspi_allocation = '
                              '"sequential"\nspi_base = 8192\nspi_step = 32\nsa_setup = '
                              '"staggered"\nkeyring_spis = "initial"')
    text = text.replace('home_agent = "ha2"', 'home_agent = "ha2"\nmac = "00:1b:21:3a:4f:5c"\n'
                        'esp_sequence = 9\ncare_of_iid = "eui64"')
    text = text.replace('care_of_address = "2001:db8:2::1"', 'care_of_prefix = "2001:db8:2::/64"')
    s = load_scenario(str(write(tmp_path, text)))
    assert [h.name for h in s.home_agents] == ["ha1", "ha2"]
    (m,) = s.mobile_nodes
    assert (m.home_agent, m.care_of_iid, m.mac.hex(), m.esp_sequence, m.spi_allocation) == \
        ("ha2", "eui64", "001b213a4f5c", 9, "sequential")
    assert (s.spi_base, s.spi_step, s.sa_setup, s.keyring_spis) == (8192, 32, "staggered",
                                                                     "initial")
    assert s.events[0].care_of_prefix == "2001:db8:2::/64" and s.events[0].care_of_address is None


@pytest.mark.parametrize("change,where", [
    (('seed = 5', 'seed = 5\ncare_of_iid = "mac"'), "top level care_of_iid"),
    (('seed = 5', 'seed = 5\nspi_allocation = "dense"'), "top level spi_allocation"),
    (('seed = 5', 'seed = 5\nspi_step = 0'), "top level spi_step"),
    (('seed = 5', 'seed = 5\nspi_base = 7'), "top level spi_base"),
    (('seed = 5', 'seed = 5\nsa_setup = "never"'), "top level sa_setup"),
    (('seed = 5', 'seed = 5\nkeyring_spis = "some"'), "top level keyring_spis"),
    (('home_agent = "ha2"', 'home_agent = "ha9"'), "[[mobile_node]] #1 home_agent"),
    (('home_agent = "ha2"\n', ''), "[[mobile_node]] #1 home_agent"),
    (('home_address = "2001:db8:11::100"', 'home_address = "2001:db8:1::100"'),
     "[[mobile_node]] #1 home_address"),
    (('name = "ha2"\n', ''), "[[home_agent]] #2 name"),
    (('name = "ha2"', 'name = "ha1"'), "[[home_agent]] #2 name"),
    (('prefixes = ["2001:db8:11::/64", "2001:db8:110::/64"]',
      'prefixes = ["2001:db8:11::/64", "2001:db8:100::/64"]'), "[[home_agent]] #2 prefixes"),
    (('home_agent = "ha2"', 'home_agent = "ha2"\nmac = "01:00:5e:00:00:01"'),
     "[[mobile_node]] #1 mac"),
    (('home_agent = "ha2"', 'home_agent = "ha2"\ncare_of_iid = "random"'),
     "[[mobile_node]] #1 care_of_iid"),
    (('home_agent = "ha2"', 'home_agent = "ha2"\nesp_sequence = 0'),
     "[[mobile_node]] #1 esp_sequence"),
    (('home_agent = "ha2"', 'home_agent = "ha2"\nspi_allocation = "x"'),
     "[[mobile_node]] #1 spi_allocation"),
    (('care_of_address = "2001:db8:2::1"', 'care_of_prefix = "2001:db8:2::/48"'),
     "[[event]] #1 care_of_prefix"),
    (('care_of_address = "2001:db8:2::1"', 'care_of_prefix = "2001:db8:110::/64"'),
     "[[event]] #1 care_of_prefix"),
    (('care_of_address = "2001:db8:2::1"',
      'care_of_address = "2001:db8:2::1"\ncare_of_prefix = "2001:db8:2::/64"'),
     "[[event]] #1 care_of_prefix"),
    (('care_of_address = "2001:db8:2::1"', 'lose_bu = false'), "[[event]] #1 care_of_prefix"),
])
def test_new_field_errors_name_file_and_field(tmp_path, change, where):
    assert_error_names(write(tmp_path, TWO_AGENTS.replace(*change)), where)


def test_single_home_agent_table_still_works():
    s = load_scenario("demo")
    assert [h.name for h in s.home_agents] == ["ha"]
    assert {m.home_agent for m in s.mobile_nodes} == {"ha"}
