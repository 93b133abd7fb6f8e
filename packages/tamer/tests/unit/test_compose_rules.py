"""tamer compose check, the pure part: the file as Compose reads it, the rules on captured image inspects,
and --fix on the round-trip document (the fixed text is parsed and checked again)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from tamer.compose.facts import image_facts
from tamer.compose.files import compose_environment, read_compose
from tamer.compose.fix import apply_fix, guess_indent, path_slug, plan_names, render
from tamer.compose.model import ComposeModel, build_model, interpolate
from tamer.compose.rules import EngineFacts, Finding, check
from tamer.errors import UsageError

DATA = Path(__file__).parent / "data" / "compose"
MONGO = image_facts(json.loads((DATA / "mongo-image-inspect.json").read_text()))
BUSYBOX = image_facts(json.loads((DATA / "busybox-image-inspect.json").read_text()))
ROOT = "/var/lib/docker"


def facts(
    images: dict[str, Any] | None = None,
    data_root: str = ROOT,
    driver: str = "json-file",
    daemon: dict[str, str] | None = None,
    volumes: frozenset[str] = frozenset(),
) -> EngineFacts:
    found = {"mongo": MONGO, "mongo:7": MONGO, "busybox": BUSYBOX} if images is None else images
    return EngineFacts(data_root, driver, {} if daemon is None else daemon, found, volumes)


def load(tmp_path: Path, text: str, name: str = "compose.yaml") -> tuple[ComposeModel, Any]:
    folder = tmp_path / "shop"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    source = read_compose(path)
    return build_model(source.data, source.env, source.project_dir, str(path)), source


def findings(tmp_path: Path, text: str, **kw: Any) -> list[Finding]:
    model, _ = load(tmp_path, text)
    return check(model, facts(**kw))


def codes(found: list[Finding], service: str | None = None) -> list[tuple[str, str | None]]:
    return [(f.code, f.facts.get("path")) for f in found if service is None or f.service == service]


GOOD = """\
    restart: unless-stopped
    container_name: {name}
    logging:
      options:
        max-size: 10m
"""


def svc(body: str, name: str = "mongo", image: str = "mongo") -> str:
    return f"services:\n  {name}:\n    image: {image}\n{GOOD.format(name=name)}{body}"


def test_the_essay_s_mongo_declares_two_volumes_and_both_are_flagged(tmp_path: Path) -> None:
    assert MONGO["volumes"] == [
        "/data/configdb",
        "/data/db",
    ]  # captured from the stand-in (as `docker inspect mongo`)
    found = findings(tmp_path, svc(""))
    assert codes(found) == [("anonymous-volume", "/data/configdb"), ("anonymous-volume", "/data/db")]
    assert all(f.facts["origin"] == "image" and f.facts["entry"] is None for f in found)


@pytest.mark.parametrize(
    ("volumes", "flagged"),
    [
        ("    volumes: [mongo_data:/data/db, mongo_config:/data/configdb]\n", []),
        ("    volumes: [mongo_data:/data/db/, ./config:/data/configdb:ro]\n", []),  # trailing slash; a bind
        ("    volumes: [mongo_data:/data/db]\n    tmpfs: /data/configdb\n", []),
        ("    volumes: [mongo_data:/data/db]\n", ["/data/configdb"]),
        # a mount at the parent does not stop the engine making anonymous volumes below it
        ("    volumes: [./data:/data]\n", ["/data/configdb", "/data/db"]),
        ("    volumes: [/data/db, mongo_config:/data/configdb]\n", ["/data/db"]),  # anonymous in the file
        (
            "    volumes:\n      - type: volume\n        target: /data/db\n"
            "      - {type: volume, source: mongo_config, target: /data/configdb}\n",
            ["/data/db"],
        ),
        (
            "    volumes:\n      - {type: bind, source: /srv/db, target: /data/db}\n"
            "      - {type: tmpfs, target: /data/configdb}\n",
            [],
        ),
    ],
)
def test_a_volume_counts_only_when_mounted_at_exactly_that_path(
    tmp_path: Path, volumes: str, flagged: list[str]
) -> None:
    text = svc(volumes) + "volumes:\n  mongo_data:\n  mongo_config:\n"
    assert [p for c, p in codes(findings(tmp_path, text)) if c == "anonymous-volume"] == flagged


def test_an_anonymous_entry_the_image_does_not_declare_is_flagged_too(tmp_path: Path) -> None:
    found = findings(tmp_path, svc("    volumes: ['/cache']\n", name="web", image="busybox"))
    assert [(f.code, f.facts["path"], f.facts["origin"], f.facts["entry"]) for f in found] == [
        ("anonymous-volume", "/cache", "file", 0)
    ]


def test_anchors_merge_keys_and_extends_are_followed(tmp_path: Path) -> None:
    text = f"""\
x-db: &db
  image: mongo
  volumes: &vols
    - mongo_data:/data/db
  restart: always
  logging: {{options: {{max-size: 10m}}}}
services:
  a:
    <<: *db
    container_name: a
  b:
    extends: a
    container_name: b
    volumes: [b_config:/data/configdb]
  c:
    image: mongo
    volumes: *vols
{GOOD.format(name="c")}
volumes:
  mongo_data:
  b_config:
"""
    found = findings(tmp_path, text)
    assert codes(found, "a") == [("anonymous-volume", "/data/configdb")]
    assert codes(found, "b") == []  # /data/db from a (extends), /data/configdb its own
    assert codes(found, "c") == [("anonymous-volume", "/data/configdb")]


def test_volumes_from_another_service_shares_its_volumes(tmp_path: Path) -> None:
    text = (
        svc("    volumes: [d:/data/db, c:/data/configdb]\n")
        + "  backup:\n    image: mongo\n    volumes_from: ['mongo:ro']\n"
        + GOOD.format(name="backup")
        + "  other:\n    image: busybox\n    volumes_from: ['container:legacy']\n"
        + GOOD.format(name="other")
        + "volumes: {d: , c: }\n"
    )
    found = findings(tmp_path, text)
    assert codes(found, "backup") == []
    assert [f.code for f in found if f.service == "other"] == ["volumes-from-container"]


def test_interpolation_as_compose_does_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DB_VOL", raising=False)
    monkeypatch.setenv("CONF_VOL", "cfg")
    text = svc('    volumes: ["${DB_VOL:-dbv}:/data/db", "$CONF_VOL:/data/configdb", "$$HOME:/x"]\n')
    model, _ = load(tmp_path, text + "volumes: {dbv: , cfg: }\n")
    (mongo,) = model.services
    assert [(m.kind, m.source, m.target) for m in mongo.mounts] == [
        ("volume", "dbv", "/data/db"),
        ("volume", "cfg", "/data/configdb"),
        ("volume", "$HOME", "/x"),
    ]
    (tmp_path / "shop" / ".env").write_text("# comment\nexport DB_VOL='fromenvfile'\n")
    model, _ = load(tmp_path, text)
    assert model.services[0].mounts[0].source == "fromenvfile"
    assert interpolate("${A:-${B:-deep}}", {}) == "deep" and interpolate("${A:+set}", {"A": "1"}) == "set"
    with pytest.raises(UsageError, match="required variable DB_PATH is not set"):
        load(tmp_path, svc('    volumes: ["${DB_PATH:?set DB_PATH}:/data/db"]\n'))


@pytest.mark.parametrize(
    ("bind", "flagged"),
    [
        ("/var/lib/docker/volumes/x/_data:/data", True),
        ("/var/lib/docker:/docker:ro", True),  # read-only, still the engine's files
        ("/var/lib/docker-backup:/b", False),  # a prefix, not a folder inside
        ("/var/lib:/host", True),  # writable and containing the data-root
        ("/var/lib:/host:ro", False),
        ("/:/rootfs:ro", False),
        ("../../../../../../var/lib/docker/containers:/c", True),
        ("./data:/data", False),
    ],
)
def test_binds_into_the_data_root(tmp_path: Path, bind: str, flagged: bool) -> None:
    found = findings(tmp_path, svc(f"    volumes: ['{bind}']\n", name="web", image="busybox"))
    assert any(f.code == "bind-into-data-root" for f in found) is flagged, found


def test_a_bind_through_a_symlink_into_the_data_root_is_flagged(tmp_path: Path) -> None:
    root = tmp_path / "docker-root"
    (root / "volumes").mkdir(parents=True)
    (tmp_path / "shop").mkdir()
    os.symlink(root / "volumes", tmp_path / "shop" / "vols")
    found = findings(
        tmp_path, svc("    volumes: ['./vols/x:/x']\n", name="w", image="busybox"), data_root=str(root)
    )
    (f,) = [f for f in found if f.code == "bind-into-data-root"]
    assert f.facts["source"] == "./vols/x" and not f.facts["contains"]
    # and a named volume whose driver_opts bind it there
    text = svc("    volumes: ['v:/x']\n", name="w", image="busybox")
    text += f"volumes:\n  v:\n    driver_opts: {{type: none, o: bind, device: {root}/volumes/v}}\n"
    assert [
        f.facts["volume"]
        for f in findings(tmp_path, text, data_root=str(root))
        if f.code == "bind-into-data-root"
    ] == ["v"]


def test_restart_logging_and_name_rules(tmp_path: Path) -> None:
    bare = "services:\n  app:\n    image: busybox\n"
    assert [f.code for f in findings(tmp_path, bare)] == [
        "no-restart-policy",
        "no-log-rotation",
        "no-container-name",
    ]
    explicit_no = bare + "    restart: 'no'\n"
    assert "no-restart-policy" not in [f.code for f in findings(tmp_path, explicit_no)]
    swarm = bare + "    deploy: {restart_policy: {condition: on-failure}, replicas: 3}\n"
    assert [f.code for f in findings(tmp_path, swarm)] == ["no-log-rotation"]
    assert "no-container-name" not in [f.code for f in findings(tmp_path, bare + "    scale: 2\n")]
    assert "no-container-name" in [f.code for f in findings(tmp_path, bare + "    deploy: {replicas: 1}\n")]


@pytest.mark.parametrize(
    ("logging", "daemon_driver", "daemon_opts", "flagged", "known"),
    [
        ("", "json-file", {}, True, True),
        ("", "json-file", None, True, False),  # daemon.json not readable: said so
        ("", "json-file", {"max-size": "50m"}, False, True),
        ("", "local", {}, False, True),
        ("", "journald", {}, False, True),
        (
            "    logging: {driver: json-file}\n",
            "journald",
            {"max-size": "1m"},
            True,
            True,
        ),  # not the daemon's driver
        ("    logging: {options: {max-size: '-1'}}\n", "json-file", {}, True, True),
        ("    logging: {options: {max-size: 10m}}\n", "json-file", {}, False, True),
        ("    logging: {driver: local}\n", "json-file", {}, False, True),
    ],
)
def test_log_rotation(
    tmp_path: Path,
    logging: str,
    daemon_driver: str,
    daemon_opts: dict[str, str] | None,
    flagged: bool,
    known: bool,
) -> None:
    model, _ = load(tmp_path, "services:\n  app:\n    image: busybox\n    restart: always\n" + logging)
    found = check(model, EngineFacts(ROOT, daemon_driver, daemon_opts, {"busybox": BUSYBOX}))
    rotation = [f for f in found if f.code == "no-log-rotation"]
    assert bool(rotation) is flagged
    if rotation:
        assert rotation[0].facts["daemon_options_known"] is known


def test_images_not_on_the_engine_are_notes_not_findings(tmp_path: Path) -> None:
    text = svc("", name="web", image="nginx:1.25") + "  app:\n    build: .\n" + GOOD.format(name="app")
    found = findings(tmp_path, text)
    assert [(f.code, f.service, f.counts) for f in found] == [
        ("image-not-on-engine", "web", False),
        ("image-not-built", "app", False),
    ]
    assert found[1].facts["image"] == "shop-app"  # what `docker compose build` tags it


def test_undeclared_and_invalid_entries(tmp_path: Path) -> None:
    found = findings(
        tmp_path,
        svc("    volumes: ['nope:/data/db', 'relative', 42, {type: volume}]\n    tmpfs: /data/configdb\n"),
    )
    assert [f.code for f in found] == ["invalid-entry", "invalid-entry", "invalid-entry", "undeclared-volume"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- just\n- a list\n", "top level is a list"),
        ("just a string\n", "top level is a string"),
        ("", "empty document"),
        ("version: '3'\n", "no `services:`"),
        ("services:\n  web: nginx\n", "service 'web' is a string"),
        ("services:\n  a:\n    extends: b\n  b:\n    extends: a\n", "circle"),
        ("services:\n  a:\n    extends: zz\n", "not a service"),
        ("volumes: [a]\nservices:\n  a: {image: x}\n", "top-level `volumes:` is a list"),
    ],
)
def test_what_compose_refuses_is_a_usage_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load(tmp_path, text)


# -- --fix ---------------------------------------------------------------------------------------


def fixed(
    tmp_path: Path, text: str, engine_volumes: frozenset[str] = frozenset(), **kw: Any
) -> tuple[str, Any, Any]:
    model, source = load(tmp_path, text)
    found = check(model, facts(volumes=engine_volumes, **kw))
    planned = plan_names(model, found, engine_volumes)
    apply_fix(source.document, planned)
    out = render(source.document, source.text)
    (tmp_path / "shop" / "fixed.yaml").write_text(out)
    again = read_compose(tmp_path / "shop" / "fixed.yaml")
    model2 = build_model(again.data, again.env, again.project_dir)
    return out, planned, (model2, check(model2, facts(volumes=engine_volumes, **kw)))


ROUND_TRIPS = [
    "# top comment\nservices:\n  web:  # the web\n    image: 'nginx:1.25'   # pinned\n    ports: [\"80:80\"]\n",
    "---\nservices:\n    web:\n        image: nginx\n        volumes:\n            - ./a:/a\n",
    'services:\n  web:\n    image: nginx\n    volumes:\n    - ./a:/a\n    - "./b:/b"\n',
    "x-a: &a\n  restart: always\nservices:\n  web:\n    <<: *a\n    image: nginx\n    command: >\n      sh -c 'echo hi'\n",
]


@pytest.mark.parametrize("text", ROUND_TRIPS)
def test_an_untouched_document_renders_byte_for_byte(tmp_path: Path, text: str) -> None:
    _, source = load(tmp_path, text)
    assert render(source.document, source.text) == text


def test_fix_names_every_volume_of_the_essay_s_mongo_and_keeps_the_rest(tmp_path: Path) -> None:
    text = "# Mongo, as in the essay\nservices:\n  mongo:\n    image: mongo  # official\n" + GOOD.format(
        name="mongo"
    )
    out, planned, (model2, found2) = fixed(tmp_path, text)
    assert [(p.key, p.engine_name, p.path) for p in planned] == [
        ("mongo_data_configdb", "shop_mongo_data_configdb", "/data/configdb"),
        ("mongo_data_db", "shop_mongo_data_db", "/data/db"),
    ]
    assert found2 == []
    (mongo,) = model2.services
    assert {(m.kind, m.source, m.target) for m in mongo.mounts} == {
        ("volume", "mongo_data_configdb", "/data/configdb"),
        ("volume", "mongo_data_db", "/data/db"),
    }
    assert set(model2.volumes) == {"mongo_data_configdb", "mongo_data_db"}
    assert out.startswith("# Mongo, as in the essay\n") and "image: mongo  # official\n" in out
    # only lines were added
    before, after = text.splitlines(), out.splitlines()
    assert [line for line in after if line in before] == before


def test_fix_rewrites_anonymous_entries_in_place_keeping_their_quotes(tmp_path: Path) -> None:
    text = svc('    volumes:\n      - "/data/db"\n      - type: volume\n        target: /data/configdb\n')
    out, planned, (_, found2) = fixed(tmp_path, text)
    assert [p.replaces for p in planned] == [1, 0]
    assert '      - "mongo_data_db:/data/db"\n' in out
    assert (
        "      - type: volume\n        source: mongo_data_configdb\n        target: /data/configdb\n" in out
    )
    assert found2 == []


def test_fix_names_never_collide_with_the_file_or_the_engine(tmp_path: Path) -> None:
    text = svc("    volumes: [mongo_data_db:/srv]\n") + "volumes:\n  mongo_data_db:\n"
    _, planned, (_, found2) = fixed(tmp_path, text, engine_volumes=frozenset({"shop_mongo_data_configdb"}))
    assert sorted(p.key for p in planned) == ["mongo_data_configdb_2", "mongo_data_db_2"]
    assert found2 == []


def test_fix_does_not_change_services_that_share_an_anchored_list(tmp_path: Path) -> None:
    text = (
        "services:\n  mongo:\n    image: mongo\n    volumes: &v\n      - ./logs:/logs\n"
        + GOOD.format(name="mongo")
        + "  tail:\n    image: busybox\n    volumes: *v\n"
        + GOOD.format(name="tail")
    )
    _, _, (model2, found2) = fixed(tmp_path, text)
    tail = next(s for s in model2.services if s.name == "tail")
    assert [(m.kind, m.target) for m in tail.mounts] == [("bind", "/logs")]
    assert found2 == []


def test_fix_on_merged_volumes_gives_the_service_its_own_list(tmp_path: Path) -> None:
    text = (
        "x-base: &base\n  volumes: ['./logs:/logs']\nservices:\n  mongo:\n    <<: *base\n    image: mongo\n"
        + GOOD.format(name="mongo")
        + "  other:\n    <<: *base\n    image: busybox\n"
        + GOOD.format(name="other")
    )
    out, _, (model2, found2) = fixed(tmp_path, text)
    assert found2 == [] and "x-base: &base\n  volumes: ['./logs:/logs']\n" in out
    other = next(s for s in model2.services if s.name == "other")
    assert [m.target for m in other.mounts] == ["/logs"]


def test_odd_names_and_paths_make_valid_volume_names() -> None:
    assert path_slug("/data/db") == "data_db" and path_slug("/") == "root"
    assert path_slug("/var/lib/my data/ü") == "var_lib_my_data"


def test_indentation_is_read_from_the_file() -> None:
    assert guess_indent("a:\n  b:\n    - x\n") == (2, 2)
    assert guess_indent("a:\n    b:\n    - x\n") == (4, 0)
    assert guess_indent("a: 1\n") == (2, 2)


def _alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    last = f"*a{levels - 1}"
    lines.append(f"services:\n  web:\n    image: busybox\n    container_name: {last}\n    volumes: {last}")
    lines.append(
        f"    logging: {{options: {{max-size: {last}}}}}\n    tmpfs: {last}\n    volumes_from: [{last}]"
    )
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_read_in_the_time_its_text_takes(tmp_path: Path) -> None:
    """9**9 (387 million) strings if expanded: every walk over the file must share what the aliases share."""
    model, source = load(tmp_path, _alias_bomb())
    found = check(model, facts())
    assert {f.code for f in found} <= {"invalid-entry", "no-restart-policy", "no-log-rotation"}
    assert all(len(str(f.facts.get("entry", ""))) <= 120 for f in found)
    assert model.services[0].container_name == "<a list>"
    assert render(source.document, source.text).count("*a7") == 9  # and --fix's renderer keeps the aliases


@pytest.mark.parametrize(
    ("image", "valid"),
    [
        ("mongo", True),
        ("mongo:7.0.5", True),
        ("library/mongo:latest", True),
        ("registry.example.com:5000/team/app:v1", True),
        ("localhost/app", True),
        ("app@sha256:" + "a" * 64, True),
        ("Mongo:7", False),
        ("a b", False),
        ("x@sha256:zz", False),
        ("::", False),
        ("a?b=c", False),
        ("mongo#x", False),
        ("ü", False),
        ("mongo:" + "t" * 129, False),
    ],
)
def test_an_image_reference_the_engine_would_refuse_is_an_invalid_entry_not_a_crash(
    tmp_path: Path, image: str, valid: bool
) -> None:
    found = findings(tmp_path, svc("", name="app", image=json.dumps(image)), images={})
    got = [f.code for f in found]
    assert got == (["image-not-on-engine"] if valid else ["invalid-entry"]), found


def test_a_crlf_file_stays_crlf_and_only_gains_lines(tmp_path: Path) -> None:
    text = "services:\r\n  mongo:\r\n    image: mongo  # c\r\n" + GOOD.format(name="mongo").replace(
        "\n", "\r\n"
    )
    _, source = load(tmp_path, text)
    assert render(source.document, source.text) == text
    out, _, (_, found2) = fixed(tmp_path, text)
    assert found2 == [] and "\n" not in out.replace("\r\n", "")
    before, after = text.split("\r\n"), out.split("\r\n")
    assert [line for line in after if line in before] == before


def test_empty_volume_lists_and_mappings_are_filled(tmp_path: Path) -> None:
    out, _, (model2, found2) = fixed(
        tmp_path, "services:\n  mongo:\n    image: mongo\n    volumes:\nvolumes:\n"
    )
    assert (
        not [f for f in found2 if f.code == "anonymous-volume"]
        and "    volumes:\n      - mongo_data_configdb:/data/configdb\n" in out
    )
    assert set(model2.volumes) == {"mongo_data_configdb", "mongo_data_db"}
    out, _, (_, found2) = fixed(
        tmp_path, "services: {mongo: {image: mongo, volumes: ['./x:/x']}}\nvolumes: {}\n"
    )
    assert not [f for f in found2 if f.code == "anonymous-volume"] and "./x:/x" in out


# -- found by a hostile pass (each failed before its fix) -------------------------------------------


@pytest.mark.parametrize(
    ("env", "name", "folder", "project"),
    [
        ("prod", "dev", "shop", "prod"),  # COMPOSE_PROJECT_NAME wins over `name:`
        ("", "My.App", "shop", "myapp"),  # `name:` normalised
        ("", "!!!", "My.Shop", "myshop"),  # `name:` normalised to nothing: the folder's name
        ("", None, "--Web.2", "web2"),
    ],
)
def test_the_project_name_is_picked_as_compose_picks_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str, name: str | None, folder: str, project: str
) -> None:
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", env)
    path = tmp_path / folder / "compose.yaml"
    path.parent.mkdir()
    path.write_text((f"name: {name!r}\n" if name else "") + svc(""))
    source = read_compose(path)
    model = build_model(source.data, source.env, source.project_dir)
    assert model.project == project
    planned = plan_names(model, check(model, facts()), ())
    assert {p.engine_name for p in planned} == {f"{project}_mongo_data_db", f"{project}_mongo_data_configdb"}


@pytest.mark.parametrize(
    ("env", "folder", "dotenv", "message"),
    [
        ("Prod", "shop", "", "COMPOSE_PROJECT_NAME='Prod' is not a valid project name"),
        ("", "shop", "COMPOSE_PROJECT_NAME=a.b\n", "COMPOSE_PROJECT_NAME='a.b' is not a valid"),
        ("", "___", "", "the project has no name"),
    ],
)
def test_a_project_name_compose_refuses_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str, folder: str, dotenv: str, message: str
) -> None:
    if env:
        monkeypatch.setenv("COMPOSE_PROJECT_NAME", env)
    else:  # an empty one in the environment would hide the .env's (as in Compose)
        monkeypatch.delenv("COMPOSE_PROJECT_NAME", raising=False)
    path = tmp_path / folder / "compose.yaml"
    path.parent.mkdir()
    path.write_text(svc(""))
    (path.parent / ".env").write_text(dotenv)
    source = read_compose(path)
    with pytest.raises(UsageError, match=message):
        build_model(source.data, source.env, source.project_dir)


def test_container_paths_are_compared_as_the_engine_cleans_them(tmp_path: Path) -> None:
    """`//data/db`, `/data/db/` and `/data/x/../db` are the engine's /data/db (Go's path.Clean); a fix
    that mounted `//data/db` and `/data/db` both would be refused by the engine (duplicate mount point)."""
    image = {"id": "x", "volumes": ["//data/db", "/data/configdb/", "/data/configdb"]}
    text = svc("    volumes:\n      - //data/db\n      - cfg:/data/x/../configdb/\n") + "volumes:\n  cfg:\n"
    found = findings(tmp_path, text, images={"mongo": image})
    assert codes(found, "mongo")[:1] == [("anonymous-volume", "/data/db")]
    assert next(f for f in found if f.code == "anonymous-volume").facts["entry"] == 0
    _, planned, (model2, found2) = fixed(tmp_path, text, images={"mongo": image})
    assert [(p.path, p.replaces) for p in planned] == [("/data/db", 0)]
    (mongo,) = model2.services
    targets = [m.target for m in mongo.mounts]
    assert sorted(targets) == ["/data/configdb", "/data/db"] and found2 == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("services:\n  ../x:\n    image: mongo\n", "service name '../x' is not one Compose accepts"),
        ("services:\n  'a b':\n    image: mongo\n", "service name 'a b'"),
        ("services:\n  a:\n    image: mongo\nvolumes:\n  'x/y':\n", "volume name 'x/y'"),
    ],
)
def test_names_compose_refuses_are_a_usage_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load(tmp_path, text)


def test_fix_reuses_the_volume_compose_made_for_this_project_s_key_and_no_other(tmp_path: Path) -> None:
    """A second --fix after `up` of the first copy must name the same volumes: Compose made
    shop_mongo_data_db for this project's key mongo_data_db (its labels say so) and holds the data.
    A volume of that name that Compose made for another project or key, or that it did not make, is
    someone else's: skipped."""
    model, _ = load(tmp_path, svc(""))
    found = check(model, facts())
    names = ["shop_mongo_data_db", "shop_mongo_data_configdb", "shop_mongo_data_configdb_2"]
    owners = {
        "shop_mongo_data_db": ("shop", "mongo_data_db"),
        "shop_mongo_data_configdb": ("other", "mongo_data_configdb"),
        "shop_mongo_data_configdb_2": ("shop", "something_else"),
    }
    planned = plan_names(model, found, names, owners)
    assert [(p.engine_name, p.existing) for p in planned] == [
        ("shop_mongo_data_configdb_3", False),
        ("shop_mongo_data_db", True),
    ]
    # without labels it is not Compose's: skipped
    planned = plan_names(model, found, names, {})
    assert [p.engine_name for p in planned] == ["shop_mongo_data_configdb_3", "shop_mongo_data_db_2"]


def test_fix_names_a_long_entry_shared_through_an_anchor_once_per_service(tmp_path: Path) -> None:
    """A long-syntax anonymous entry in an anchored list used by two services was named in place:
    both services ended up on ONE volume (the last one named: two databases in one folder) and the
    x- template changed. Each service must get its own volume and the template stay as written."""
    text = (
        "x-vols: &vols\n  - type: volume\n    target: /data/db  # the data\n  - /data/configdb\n"
        "services:\n  a:\n    image: mongo\n    volumes: *vols\n  b:\n    image: mongo\n    volumes: *vols\n"
    )
    out, planned, (model2, found2) = fixed(tmp_path, text)
    assert not [f for f in found2 if f.code == "anonymous-volume"] and len(planned) == 4
    mounts = {(s.name, m.target): m.source for s in model2.services for m in s.mounts}
    assert mounts == {
        ("a", "/data/db"): "a_data_db",
        ("a", "/data/configdb"): "a_data_configdb",
        ("b", "/data/db"): "b_data_db",
        ("b", "/data/configdb"): "b_data_configdb",
    }
    assert out.startswith(
        "x-vols: &vols\n  - type: volume\n    target: /data/db  # the data\n  - /data/configdb\n"
    )


def test_fix_writes_a_volume_path_with_dollar_or_colon_so_compose_reads_it_back(tmp_path: Path) -> None:
    image = {"id": "x", "volumes": ["/var/lib/$app", "/a:b"]}
    text = svc("", image="odd")
    out, _, (model2, found2) = fixed(tmp_path, text, images={"odd": image})
    assert found2 == [] and "/var/lib/$$app" in out
    assert sorted(m.target for m in model2.services[0].mounts) == ["/a:b", "/var/lib/$app"]


def test_included_and_override_files_are_notes_not_silence(tmp_path: Path) -> None:
    """`include:` and compose.override.yaml bring services and volumes this check does not read: it said
    nothing (exit 0, 'clean'), and a file of includes only was 'not a compose file'. Now each is a note,
    which makes the result incomplete (exit 3 when nothing else is found)."""
    from tamer.cli.compose_cmds import _INCOMPLETE, override_notes

    found = findings(tmp_path, "include:\n  - db/compose.yaml\n  - path: [a.yaml, b.yaml]\n")
    assert [(f.code, f.facts["file"]) for f in found] == [
        ("include-other-file", "db/compose.yaml"),
        ("include-other-file", "a.yaml"),
        ("include-other-file", "b.yaml"),
    ]
    assert all(not f.counts and f.code in _INCOMPLETE for f in found)
    path = tmp_path / "shop" / "compose.yaml"
    assert override_notes(path) == []
    (path.parent / "compose.override.yaml").write_text("services: {}\n")
    (note,) = override_notes(path)
    assert note.code == "override-not-read" and note.code in _INCOMPLETE
    assert override_notes(path.parent / "other.yaml") == []  # `-f other.yaml` merges no override


def test_a_declared_volume_whose_name_another_owner_has_is_flagged(tmp_path: Path) -> None:
    """`volumes: {data: {}}` in project shop is shop_data on the engine; when that volume exists and
    Compose did not make it for shop's `data` (made by hand, or by another project), `up` only warns and
    mounts it: two stacks share one volume. External volumes are meant to exist: not flagged."""
    text = (
        svc("    volumes: [data:/data/db, cfg:/data/configdb, ext:/x, own:/y]\n")
        + "volumes:\n  data:\n  cfg:\n    name: shared_cfg\n  ext:\n    external: true\n  own:\n"
    )
    model, _ = load(tmp_path, text)
    on_engine = EngineFacts(
        ROOT,
        "json-file",
        {},
        {"mongo": MONGO},
        frozenset({"shop_data", "shared_cfg", "ext", "shop_own"}),
        {"shared_cfg": ("other", "cfg"), "shop_own": ("shop", "own")},
    )
    taken = [f.facts for f in check(model, on_engine) if f.code == "volume-taken"]
    assert taken == [
        {"volume": "data", "engine_name": "shop_data", "owner_project": None, "owner_key": None},
        {"volume": "cfg", "engine_name": "shared_cfg", "owner_project": "other", "owner_key": "cfg"},
    ]


def test_dotenv_values_are_read_as_compose_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An inline comment was part of the value (COMPOSE_PROJECT_NAME=shop # prod named no valid project;
    DATA=/srv/db # fast disk mounted '/srv/db # fast disk'), a quoted value followed by a comment kept its
    quotes, and ${VAR} inside .env was not expanded."""
    for name in ("COMPOSE_PROJECT_NAME", "ROOT", "DATA", "LIT", "DQ", "HASH"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / ".env").write_text(
        "COMPOSE_PROJECT_NAME=prod # the live one\n"
        "ROOT=/srv\n"
        "DATA=${ROOT}/db\t# fast disk\n"
        "LIT='${ROOT} # kept' # dropped\n"
        'DQ="a\\"b ${ROOT}" # dropped\n'
        "HASH=a#b\n"
    )
    env = compose_environment(str(folder))
    assert [env[k] for k in ("COMPOSE_PROJECT_NAME", "DATA", "LIT", "DQ", "HASH")] == [
        "prod",
        "/srv/db",
        "${ROOT} # kept",
        'a"b /srv',
        "a#b",
    ]
