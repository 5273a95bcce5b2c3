"""The build stage's pure planner, the typed manifest, and sync's one write at the end.

The planner is tested alone (no files, no builds) with targets unlike the host; the manifest
records are checked for round trips and for errors that name the bad field; sync is run in
process with an injected native builder to show the manifest and the locks are written once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from support.dists import make_sdist, make_wheel
from support.server import IndexServer
from wheelport.builders.native import BUILDER as NATIVE
from wheelport.builders.plan import BuildNeed, ImageSlot, SdistInfo
from wheelport.builders.planner import PriorBuild, plan_builds
from wheelport.builders.stage import Builders
from wheelport.config import build_config
from wheelport.manifest import Manifest, ManifestError
from wheelport.sync import sync
from wheelport.targets import parse_target
from wheelport.wheelhouse import Wheelhouse

HOST = parse_target("cp311-manylinux_2_36_x86_64")
WIN = parse_target("cp312-win_amd64")
MAC = parse_target("cp313-macosx_11_0_arm64")
OLD = parse_target("cp39-manylinux_2_17_x86_64")
NEW = parse_target("cp312-manylinux_2_28_x86_64")
BY_ID = {t.identifier: t for t in (WIN, MAC, OLD, NEW)}
PURE = SdistInfo(("setuptools",), compiled=False)
COMPILED = SdistInfo(("setuptools",), compiled=True)
ABI3 = SdistInfo(("setuptools",), compiled=True, abi3=True)


def need(name: str, *targets: str) -> BuildNeed:
    return BuildNeed(name, "1.0", f"sdists/{name}-1.0.tar.gz", name * 8, tuple(targets))


def slot(target: Any, project: str) -> ImageSlot:
    policy = target.policy_version or (2, 17)
    return ImageSlot(f"img-{policy[0]}_{policy[1]}", "", policy, ())


def plan(needs: list[BuildNeed], info: dict[str, SdistInfo], **kw: Any) -> Any:
    kw.setdefault("prior", {})
    kw.setdefault("container", True)
    return plan_builds(needs, BY_ID, info=lambda n: info[n.name], host=HOST, slot=slot, **kw)


def test_pure_sdist_is_one_native_job_for_targets_unlike_the_host() -> None:
    p = plan([need("puresrc", WIN.identifier, MAC.identifier, OLD.identifier)], {"puresrc": PURE})
    (job,) = p.jobs
    assert job.builder == NATIVE and job.here
    assert {t.identifier for t in job.targets} == {WIN.identifier, MAC.identifier, OLD.identifier}
    assert not p.reuses and not p.unserved


def test_compiled_sdist_goes_to_containers_per_policy_and_names_what_windows_needs() -> None:
    p = plan([need("cext", WIN.identifier, OLD.identifier, NEW.identifier)], {"cext": COMPILED})
    builders = sorted(j.builder for j in p.jobs)
    assert builders == ["container:img-2_17", "container:img-2_28"]
    (cell,) = p.unserved
    assert cell.target == WIN and cell.state == "missing"
    assert "native build host for Windows" in cell.why


def test_recorded_builds_are_reused_and_the_sdist_is_not_read() -> None:
    """A present wheel recorded for the target is reused; an abi3 wheel built in an older
    policy's container serves a newer target it was not recorded for (``new``); the sdist's
    facts are never asked for when nothing is left to build."""
    n = need("cext", OLD.identifier, NEW.identifier)
    wheel = "wheels/cext-1.0-cp39-abi3-manylinux_2_17_x86_64.whl"
    prior = {n.sdist_sha256: [PriorBuild(wheel, "container:img-2_17", (OLD.identifier,))]}

    def no_info(_: BuildNeed) -> SdistInfo:
        raise AssertionError("the sdist was read although every target is served")

    p = plan_builds([n], BY_ID, info=no_info, prior=prior, host=HOST, container=True, slot=slot)
    assert not p.jobs and not p.unserved
    reuse = {r.target.identifier: r.new for r in p.reuses}
    assert reuse == {OLD.identifier: False, NEW.identifier: True}


def test_native_wheels_do_not_serve_other_targets_and_left_cells_are_deferred() -> None:
    n = need("cext", OLD.identifier, NEW.identifier)
    native = {n.sdist_sha256: [PriorBuild("wheels/cext-1.0-cp39-abi3-linux_x86_64.whl",
                                          NATIVE, ())]}  # fmt: skip
    left = {(n.sdist_sha256, NEW.identifier): "shard 2/2"}
    p = plan([n], {"cext": ABI3}, prior=native, left=left)
    assert [[t.identifier for t in j.targets] for j in p.jobs] == [[OLD.identifier]]
    (cell,) = p.unserved
    assert (cell.target, cell.state, cell.why) == (NEW, "deferred", "left to shard 2/2")


def test_without_an_engine_a_compiled_linux_target_is_missing_with_the_reason() -> None:
    p = plan([need("cext", NEW.identifier)], {"cext": COMPILED}, container=False)
    assert not p.jobs
    (cell,) = p.unserved
    assert cell.state == "missing" and "needs a container build" in cell.why


# -- the manifest ----------------------------------------------------------------------------

SHA = "ab" * 32


def manifest_dict() -> dict[str, Any]:
    return {
        "version": 1,
        "inputs_digest": "d" * 64,
        "targets": [WIN.identifier],
        "artifacts": {
            "wheels/a-1.0-py3-none-any.whl": {
                "sha256": SHA, "size": 10,
                "origin": {"kind": "build", "builder": "native", "sdist": "sdists/a-1.0.tar.gz",
                           "sdist_sha256": SHA, "targets": [WIN.identifier]},
            },
            "sdists/a-1.0.tar.gz": {
                "sha256": SHA, "size": 5, "yanked": "broken",
                "origin": {"kind": "download", "url": "https://example.invalid/a-1.0.tar.gz"},
            },
        },
        "locks": {WIN.identifier: {
            "file": f"pylock.{WIN.identifier}.toml", "python_version": "3.12",
            "sys_platform": "win32", "platform_machine": "AMD64", "libc": None, "policy": None,
            "tags": ["py3-none-any"],
            "packages": [{"name": "a", "version": "1.0", "path": "wheels/a-1.0-py3-none-any.whl",
                          "sha256": SHA, "size": 10}],
            "unbuilt": [], "tools": [],
        }},
        "build_deps": {SHA: {"cp311-manylinux_2_36_x86_64": [
            {"name": "setuptools", "version": "75.0", "sha256": SHA,
             "path": "wheels/setuptools-75.0-py3-none-any.whl"},
        ]}},
        "future-key": {"kept": True},
    }  # fmt: skip


def test_manifest_round_trips_every_section_and_unknown_keys() -> None:
    data = manifest_dict()
    m = Manifest.from_dict(data)
    assert m.artifacts["sdists/a-1.0.tar.gz"].yanked == "broken"
    assert m.locks[WIN.identifier].packages[0]["path"] == "wheels/a-1.0-py3-none-any.whl"
    assert [rel for rel, _ in m.builds_of(SHA)] == ["wheels/a-1.0-py3-none-any.whl"]
    assert m.to_dict() == data


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["artifacts"]["sdists/a-1.0.tar.gz"].update(sha256="xyz"),
         "artifacts[sdists/a-1.0.tar.gz].sha256"),
        (lambda d: d["artifacts"]["sdists/a-1.0.tar.gz"].update(size=-1),
         "artifacts[sdists/a-1.0.tar.gz].size"),
        (lambda d: d["artifacts"]["wheels/a-1.0-py3-none-any.whl"]["origin"].update(targets="x"),
         "artifacts[wheels/a-1.0-py3-none-any.whl].origin.targets"),
        (lambda d: d["locks"][WIN.identifier].update(policy=[2]),
         f"locks[{WIN.identifier}].policy"),
        (lambda d: d["locks"][WIN.identifier]["packages"][0].pop("sha256"),
         f"locks[{WIN.identifier}].packages[0].sha256"),
        (lambda d: d["build_deps"][SHA]["cp311-manylinux_2_36_x86_64"][0].update(sdist="s"),
         "build_deps[abababababab…][cp311-manylinux_2_36_x86_64][0]"),
        (lambda d: d.update(version=7), "version"),
    ],
)  # fmt: skip
def test_manifest_errors_name_the_bad_field(edit: Any, field: str) -> None:
    data = manifest_dict()
    edit(data)
    with pytest.raises(ManifestError) as info:
        Manifest.from_dict(data)
    assert info.value.message.startswith(f"wheelport.json: {field} ")


def test_unreadable_manifest_is_one_error_naming_the_file(tmp_path: Path) -> None:
    wh = Wheelhouse(tmp_path)
    wh.manifest_path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"wheelport\.json is not valid JSON"):
        wh.load_manifest()


# -- sync writes once ------------------------------------------------------------------------


def test_sync_saves_the_manifest_and_each_lock_once_with_an_injected_native_builder(
    tmp_path: Path, dists_dir: Path, tinybackend_wheel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fetch and build change one in-memory manifest; it is saved once, after the rewritten
    locks. The native builder is the injected one (it never runs a backend)."""
    with IndexServer() as srv:
        srv.add(tinybackend_wheel)
        srv.add(make_wheel(dists_dir, "dep", "1.0"))
        srv.add(make_sdist(dists_dir, "puresrc", "1.0", deps=["dep"]))
        calls: list[str] = []

        def native(sdist: Path, *, wheels_dir: Path, out_dir: Path, log_dir: Path) -> Path:
            calls.append(sdist.name)
            assert (wheels_dir / tinybackend_wheel.name).is_file()  # build deps fetched first
            return make_wheel(out_dir, "puresrc", "1.0", deps=["dep"])

        writes: list[str] = []
        original_save = Wheelhouse.save_manifest

        def save(self: Wheelhouse, manifest: Manifest) -> None:
            writes.append("manifest")
            original_save(self, manifest)

        monkeypatch.setattr(Wheelhouse, "save_manifest", save)
        import wheelport.finish as layout

        original_write = layout.atomic_write_text

        def write_text(path: Path, text: str, *, durable: bool = True) -> None:
            if path.name.startswith("pylock."):
                writes.append(path.name)
            original_write(path, text, durable=durable)

        monkeypatch.setattr(layout, "atomic_write_text", write_text)
        targets = [WIN.identifier, MAC.identifier]
        config = build_config(directory=tmp_path, requirements=["puresrc"],
                              index_urls=[srv.url], targets=targets,
                              output=tmp_path / "wh", tools=["none"])  # fmt: skip
        writes.clear()
        result = sync(config, builders=Builders(native=native))
    assert calls == ["puresrc-1.0.tar.gz"]  # one build serves both targets
    locks = sorted(f"pylock.{t}.toml" for t in targets)
    # (the lock stage writes its locks through wheelport.lock, not counted here) the build
    # stage's rewrites of both locks, then the one manifest save
    assert writes == [*locks, "manifest"]
    assert result.ok
    data = json.loads((tmp_path / "wh" / "wheelport.json").read_text(encoding="utf-8"))
    origin = data["artifacts"]["wheels/puresrc-1.0-py3-none-any.whl"]["origin"]
    assert origin["builder"] == NATIVE and sorted(origin["targets"]) == sorted(targets)
    assert sorted(data["locks"]) == sorted(targets)


def test_atomic_writes_get_the_umask_mode_not_mkstemps(tmp_path: Path) -> None:
    """Wheels placed by the build stage, locks and the manifest are read by other users
    (nginx, pip in a container): 0644 under umask 022, never mkstemp's 0600."""
    import os

    from wheelport.wheelhouse import atomic_write_text

    old = os.umask(0o022)
    try:
        import wheelport.wheelhouse as layout

        target = tmp_path / "pylock.x.toml"
        mask = layout._UMASK
        atomic_write_text(target, "x")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
    assert mask & 0o044 == 0 and target.stat().st_mode & 0o044 == 0o044
