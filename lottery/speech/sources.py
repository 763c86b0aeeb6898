"""Where the recordings come from: Debian data packages, their members, roles and licences.

The environments are drawn from game and voice data packages of Debian's
archive, NOT from TAU Urban Acoustic Scenes (the paper's source, which
cannot be downloaded here). Each rule below maps member paths of a package
to a role (``clean`` speech of a speaker, or ``noise`` of an environment).

Clean speech (speaker = the unit of the train/test speaker split):
- ``festvox-ru``: one studio speaker (msu_ru_nsh), read sentences, 16 kHz.
- ``fillets-ng-data-cs``: acted Czech dialogue; the two fish, big (``v``)
  and small (``m``), are one voice actor each.
- ``tuxpaint-stamps-default``: spoken descriptions of stamps; one speaker
  per language is assumed (``_desc_<lang>.ogg``).
- ``pocketsphinx-testdata``: 47 s of English read speech (tests only).

Noise by environment:
- indoor: UFO:AI ambience loops (machinery, hum, TV, fountain, fire, ...;
  inside the zip ``0snd.pk3``), LinCity-NG market / school / industry
  clips, OpenSFX workshop sounds, Simutrans workshop sounds.
- outdoor: MegaGlest tileset ambiences (day, night, rain, wind; the same
  file ships in several tilesets and is deduplicated by content), LinCity-NG
  nature clips, Simutrans landscapes, OpenSFX wind and animals.
- transportation: OpenSFX vehicles (trains, ships, planes, buses; inside
  the container ``opensfx.cat``), TORCS engine and road loops, LinCity-NG
  trains and traffic, Simutrans vehicles.

Licences are read per file from the package's machine-readable
``/usr/share/doc/<pkg>/copyright`` (DEP-5, last matching ``Files:`` stanza
wins), from the entry name for OpenSFX (each entry names its own licence),
or given here where the copyright file is not machine-readable.
"""

from __future__ import annotations

import fnmatch
import re
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ENVIRONMENTS = ("indoor", "outdoor", "transportation")


@dataclass(frozen=True)
class Rule:
    """Members of a package that play one role.

    Attributes
    ----------
    pattern : str
        Regular expression searched in the member path (for a container, the
        path inside it). Named groups can fill ``value``.
    role : {"clean", "noise"}
    value : str
        Speaker (clean) or environment (noise); ``{group}`` is replaced by a
        named group of ``pattern``.
    """

    pattern: str
    role: str
    value: str


@dataclass(frozen=True)
class Source:
    """A Debian package and what the corpus takes from it.

    Attributes
    ----------
    package : str
    container : {"files", "opensfx", "pk3"}
        How members are stored: plain files, OpenTTD's ``.cat`` sound
        container, or a zip (``.pk3``).
    container_glob : str
        Glob (relative to the unpacked package root) of the container file, or of the plain files.
    rules : tuple of Rule
        First match wins; unmatched members are not used.
    licence : str
        Licence when the copyright file is not machine-readable (else looked up per file).
    copyright_prefix : str
        Prefix that turns a member path into the path the copyright file's
        ``Files:`` patterns use (e.g. ``base/`` for UFO:AI's pk3 members).
    """

    package: str
    container: str
    container_glob: str
    rules: tuple[Rule, ...]
    licence: str = ""
    copyright_prefix: str = ""
    note: str = ""
    tests_only: bool = field(default=False)


_LINCITY = "usr/share/games/lincity-ng/sounds/"
_SIMUTRANS = "usr/share/games/simutrans/pak/sound/"

SOURCES: tuple[Source, ...] = (
    Source(
        "festvox-ru",
        "files",
        "usr/share/festival/voices/russian/*/wav/ru_*.wav",
        (Rule(r"/wav/ru_\d+\.wav$", "clean", "festvox-ru/nsh"),),
        note="Russian read sentences, one male studio speaker, 16 kHz",
    ),
    Source(
        "fillets-ng-data-cs",
        "files",
        "usr/share/games/fillets-ng/sound/*/cs/*.ogg",
        (Rule(r"/cs/[^/-]+-(?P<fish>[mv])-[^/]+\.ogg$", "clean", "fillets-cs/{fish}"),),
        licence="GPL-2",
        note="Czech acted dialogue; the small (m) and big (v) fish, one actor each",
    ),
    Source(
        "tuxpaint-stamps-default",
        "files",
        "usr/share/tuxpaint/stamps/**/*_desc_*.ogg",
        (
            Rule(
                r"_desc_(?P<lang>ro|es|ru|fr|bg|el|be|ca|da)\.ogg$",
                "clean",
                "tuxpaint/{lang}",
            ),
        ),
        note="spoken stamp descriptions; one speaker per language assumed",
    ),
    Source(
        "pocketsphinx-testdata",
        "files",
        "usr/share/pocketsphinx/test/data/**/*.wav",
        (Rule(r"\.wav$", "clean", "pocketsphinx"),),
        note="47 s of English read speech (tests only)",
        tests_only=True,
    ),
    Source(
        "ufoai-sound",
        "pk3",
        "usr/share/games/ufoai/base/0snd.pk3",
        (
            Rule(
                r"sound/ambience/(arcticwind|thunder\d|cricket_loop|sand-city|ufo_night_atm|city_abnd_ufoai_atm)\.ogg$",
                "noise",
                "outdoor",
            ),
            # an alien creature, and two 8 kHz fragments
            Rule(r"sound/ambience/(bloodspiderwalk|creak|droning_short)\.ogg$", "skip", ""),
            Rule(r"sound/ambience/[^/]+\.ogg$", "noise", "indoor"),
        ),
        copyright_prefix="base/",
        note="UFO:AI ambience loops (machinery, hum, TV, fountain, fire, ...)",
    ),
    Source(
        "megaglest-data",
        "files",
        "usr/share/games/megaglest/tilesets/*/sounds/*",
        (Rule(r"/tilesets/[^/]+/sounds/[^/]+\.(ogg|wav)$", "noise", "outdoor"),),
        note="MegaGlest tileset ambiences (day, night, rain, wind, animals)",
    ),
    Source(
        "lincity-ng-data",
        "files",
        _LINCITY + "*.wav",
        (
            Rule(
                r"/(Market\w*|School\d|University\d|Health\d|Industry\w+|Blacksmith\d|Mill\d|Pottery\d"
                r"|Recycle\d|CoalMine\d|OreMine\d|PowerCoal\w+|Commune\d)\.wav$",
                "noise",
                "indoor",
            ),
            Rule(
                r"/(Green\d|ParklandLake\d|Water\d|Farm\d|OrganicFarm\d|WindMill\d)\.wav$", "noise", "outdoor"
            ),
            Rule(r"/(RailTrain\d|Trafic\w+|DirtTrack\d)\.wav$", "noise", "transportation"),
        ),
        note="city-building ambience clips",
    ),
    Source(
        "simutrans-pak64",
        "files",
        _SIMUTRANS + "*.wav",
        (
            Rule(r"/(buzzsaw|jackhammer|gavel|tree-cutting)\.wav$", "noise", "indoor"),
            Rule(r"/(forest|desert|tropic|arctic|seagulls|Water|horse)\.wav$", "noise", "outdoor"),
            Rule(
                r"/(bus|truck|diesel|steam|planelow|comet-jet|boat-horn|crossing)\.wav$",
                "noise",
                "transportation",
            ),
        ),
        note="transport-game clips",
    ),
    Source(
        "openttd-opensfx",
        "opensfx",
        "usr/share/games/openttd/baseset/opensfx/opensfx.cat",
        (
            Rule(r"^\d+ (Toyland|Unused|Splat|Beep|Good Year|Bad Year|Oooh)", "skip", ""),
            Rule(
                r"^\d+ (Cash till|Applause|Mining machinery|Sawmill|Electric sparking|Jackhammer"
                r"|Building bridge"
                r"|Factory Whistle|Morse)",
                "noise",
                "indoor",
            ),
            Rule(r"^\d+ (Wind|Heavy wind|Sheep|Cow|Horse|Tropical|Lumber mill)", "noise", "outdoor"),
            Rule(
                r"(train|Train|Steam|Ship|Ferry|plane|jet|Jet|Helicopter|bus|Bus|Truck|crossing|car horn"
                r"|breakdown|Crash|Big crash)",
                "noise",
                "transportation",
            ),
        ),
        note="OpenTTD sound effects (trains, ships, planes, buses, ...) in one .cat container",
    ),
    Source(
        "torcs-data",
        "files",
        "usr/share/games/torcs/data/sound/*.wav",
        (Rule(r"/sound/[^/]+\.wav$", "noise", "transportation"),),
        note="TORCS engine and road loops",
    ),
)


def source(package: str) -> Source:
    """The :class:`Source` of a package name."""
    for s in SOURCES:
        if s.package == package:
            return s
    raise ValueError(f"unknown package {package!r}; known: {', '.join(s.package for s in SOURCES)}")


def classify(src: Source, member: str) -> tuple[str, str] | None:
    """``(role, value)`` of a member by the first matching rule; None if unused (or ``skip``)."""
    for rule in src.rules:
        m = re.search(rule.pattern, member)
        if m:
            if rule.role == "skip":
                return None
            return rule.role, rule.value.format(**m.groupdict())
    return None


# ----------------------------------------------------------------------------- containers


@dataclass(frozen=True)
class Member:
    """One recording inside a package.

    Attributes
    ----------
    name : str
        Path inside the package (plain files) or inside its container.
    data : bytes or Path
        The encoded file (WAV, OGG), or the path of a plain file (read when decoded).
    licence : str
        Licence named by the container itself ("" when it names none).
    """

    name: str
    data: bytes | Path
    licence: str = ""

    def raw(self) -> bytes:
        """The encoded bytes."""
        return self.data.read_bytes() if isinstance(self.data, Path) else self.data


_OPENSFX_LICENCE = re.compile(r"License:\s*(.+?)\.?\s*$")


def read_opensfx(path: str | Path) -> Iterator[Member]:
    """Entries of OpenTTD's ``opensfx.cat``: a table of (offset, size) pairs, then named WAV files.

    The first offset (high bit = "new format" flag) divided by 8 is the number
    of entries; each entry is a length-prefixed, NUL-terminated name followed
    by a RIFF WAV file. OpenSFX names carry title, author and licence, e.g.
    ``"Ship horn". Original ... License: Creative Commons Attribution 3.0 Unported.``.
    Empty placeholder entries are skipped.
    """
    blob = Path(path).read_bytes()
    (first,) = struct.unpack_from("<I", blob, 0)
    count = (first & 0x7FFFFFFF) // 8
    for i in range(count):
        offset, size = struct.unpack_from("<II", blob, 8 * i)
        offset &= 0x7FFFFFFF
        name_len = blob[offset]
        raw_name = blob[offset + 1 : offset + 1 + name_len].rstrip(b"\0").decode("utf-8", "replace")
        data = blob[offset + 1 + name_len : offset + size]
        if not data.startswith(b"RIFF"):
            continue
        m = _OPENSFX_LICENCE.search(raw_name)
        title = raw_name.split('"')[1] if raw_name.count('"') >= 2 else raw_name
        yield Member(f"{i:02d} {title}", data, _short_licence(m.group(1)) if m else "")


def _short_licence(text: str) -> str:
    t = text.lower()
    table = [
        ("attribution-sharealike 3.0", "CC-BY-SA-3.0"),
        ("attribution 3.0", "CC-BY-3.0"),
        ("zero 1.0", "CC0-1.0"),
    ]
    for key, short in table:
        if key in t:
            return short
    return text.strip()


def read_pk3(path: str | Path, prefix: str = "sound/") -> Iterator[Member]:
    """Members of a zip (``.pk3``) under ``prefix``."""
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if info.filename.startswith(prefix) and not info.is_dir():
                yield Member(info.filename, z.read(info))


def iter_members(src: Source, root: str | Path) -> Iterator[Member]:
    """Every recording of ``src`` under an unpacked package ``root``, in a stable order."""
    root = Path(root)
    files = sorted(root.glob(src.container_glob))
    if src.container == "files":
        for f in files:
            if f.is_file():
                yield Member(f.relative_to(root).as_posix(), f)
        return
    if not files:
        return
    if src.container == "opensfx":
        yield from read_opensfx(files[0])
    elif src.container == "pk3":
        yield from read_pk3(files[0])
    else:
        raise ValueError(f"unknown container kind {src.container!r}")


# ----------------------------------------------------------------------------- licences


def parse_dep5(text: str) -> list[tuple[list[str], str]]:
    """``Files:`` stanzas of a machine-readable Debian copyright file: ``[(patterns, licence)]``.

    Returns an empty list for a file that is not in the DEP-5 format.
    """
    if not text.lstrip().startswith("Format:"):
        return []
    stanzas: list[tuple[list[str], str]] = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, list[str]] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key].append(line.strip())
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip()
                fields[key] = [value.strip()] if value.strip() else []
        if "Files" in fields and "License" in fields and fields["License"]:
            patterns = " ".join(fields["Files"]).split()
            stanzas.append((patterns, fields["License"][0]))
    return stanzas


def dep5_licence(stanzas: list[tuple[list[str], str]], path: str) -> str:
    """Licence of ``path`` under DEP-5 stanzas: the last stanza with a matching pattern wins.

    A pattern matches the path or any of its trailing sub-paths (install
    paths carry a prefix such as ``usr/share/games/...`` the source tree lacks).
    """
    parts = path.split("/")
    tails = ["/".join(parts[i:]) for i in range(len(parts))]
    found = ""
    for patterns, licence in stanzas:
        if any(fnmatch.fnmatchcase(t, p) for p in patterns for t in tails):
            found = licence
    return found


def package_licence(src: Source, root: str | Path, member: Member) -> str:
    """Licence of one member: the container's word, else the copyright file, else the table's."""
    if member.licence:
        return member.licence
    copyright_file = Path(root) / "usr/share/doc" / src.package / "copyright"
    if copyright_file.is_file():
        stanzas = parse_dep5(copyright_file.read_text(errors="replace"))
        found = dep5_licence(stanzas, src.copyright_prefix + member.name) if stanzas else ""
        if found:
            return found
    return src.licence or "unknown"
