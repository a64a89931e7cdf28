"""``insights-agent skill``: install the investigation playbook as a coding-agent skill.

The skill is one file, ``SKILL.md`` (YAML front matter with ``name`` and ``description``, then
the steps), shipped as package data in ``agent/skill/``. It is written into
``.claude/skills/insights-investigation/`` under the current folder unless told otherwise.
An existing file with the same text is left alone; a different one is replaced only with
``force``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SKILL_NAME = "insights-investigation"
DEFAULT_DIR = Path(".claude") / "skills" / SKILL_NAME


class SkillExistsError(Exception):
    """A different SKILL.md is already where the skill would go."""


def skill_text() -> str:
    """The packaged SKILL.md."""
    return resources.files("agent").joinpath("skill", "SKILL.md").read_text(encoding="utf-8")


def install_skill(install_dir: Path | str | None = None, *, force: bool = False) -> tuple[Path, bool]:
    """Write SKILL.md into ``install_dir`` (default ``.claude/skills/insights-investigation``
    under the current folder). Return its path and whether the file was written (False when
    it already held the same text). Raise ``SkillExistsError``, writing nothing, when a
    different SKILL.md is there and ``force`` is not set."""
    folder = Path(install_dir).expanduser() if install_dir is not None else Path.cwd() / DEFAULT_DIR
    path = folder.absolute() / "SKILL.md"
    text = skill_text()
    if path.is_dir():
        raise SkillExistsError(f"{path} is a folder; choose another --install-dir")
    if path.exists():
        current = path.read_text(encoding="utf-8", errors="replace")
        if current == text:
            return path, False
        if not force:
            raise SkillExistsError(f"{path} exists and differs from this version of the skill; "
                                   "pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path, True
