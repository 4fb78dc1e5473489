"""The MIG directory: message types as data, loaded and compiled once.

Where it sits in the mail flow: the transport calls :func:`registry` (or :func:`reload` on
SIGHUP) at start; every validation then uses the compiled result. A message type is a
folder under ``types/`` with a ``mig.toml`` (identification, files, code lists); EDIFACT
directories are folders under ``directories/``. The shipped data is in ``data/`` beside
this module; an operator adds folders of the same shape to a directory named in
``SW_MIG_PATH`` (``:``-separated), where a type of the same name replaces the shipped one.
``data/README.md`` documents the format.
"""

from __future__ import annotations

import os
import threading
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree, isoschematron

from singlewindow.mig.edifact.message import EdifactProfile
from singlewindow.mig.model import (
    DataError,
    GroupDef,
    SegmentDef,
    SegmentRef,
    read_segments,
    read_structure,
)
from singlewindow.mig.rules import compile_lean
from singlewindow.mig.xsdgen import schema_for

DATA = Path(__file__).with_name("data")


@dataclass(frozen=True, slots=True)
class MessageType:
    """One message type of the MIG, compiled."""

    name: str
    title: str
    namespace: str
    root: str
    schema: etree.XMLSchema
    schema_text: bytes
    rules: isoschematron.Schematron | None
    edifact: EdifactProfile | None = None
    unh: tuple[str, str, str, str] | None = None
    folder: Path = DATA
    #: UNH S009 0057 association assigned codes accepted besides none (e.g. ``IATA``)
    associations: tuple[str, ...] = ()
    #: ``[rules] message_local``: each rule looks only inside one message (or only at the
    #: envelope), so the rules may run message by message (``data/README.md``)
    rules_message_local: bool = False
    #: the rules compiled to this project's lean XSLT (:mod:`rules`), which runs instead
    #: of ``rules``' ISO skeleton; ``None`` when the schema needs the skeleton
    rules_lean: etree._ElementTree | None = None
    #: the XSD is generated from this type's EDIFACT data (no ``[xml] schema``): it says
    #: what the converter checks, so the converter's own output is not checked against it
    #: again (``validate._check_message``; a company's XML always is)
    schema_generated: bool = False

    @property
    def message(self) -> str:
        """The message this type is one release of, the name a route may give for all its
        releases (issue 14): an EDIFACT type's UNH message (``PAXLST`` for
        ``PAXLST-D03B``); an XML type's name without its last ``-`` part (``GENDEC`` for
        ``GENDEC-1``)."""
        if self.unh is not None:
            return self.unh[0]
        base, dash, _ = self.name.rpartition("-")
        return base if dash else self.name


@dataclass(frozen=True, slots=True)
class Registry:
    types: Mapping[str, MessageType]
    by_unh: Mapping[tuple[str, str, str, str], MessageType]
    by_xml: Mapping[tuple[str, str], MessageType]
    service: Mapping[str, SegmentDef] = field(default_factory=dict)

    @property
    def supported(self) -> str:
        """The EDIFACT message types and releases this MIG accepts, for a refusal's text:
        ``PAXLST D:02B, D:03B, D:05B (UN, association IATA); IFTDGN D:03A (UN)``."""
        by_message: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
        for (message, version, release, agency), mt in sorted(self.by_unh.items()):
            key = (message, agency, mt.associations)
            by_message.setdefault(key, []).append(f"{version}:{release}")
        parts = []
        for (message, agency, assoc), releases in by_message.items():
            also = f", association {' or '.join(assoc)}" if assoc else ""
            parts.append(f"{message} {', '.join(releases)} ({agency}{also})")
        return "; ".join(parts)

    def route_type(self, text: str) -> str | None:
        """The message type a route names, spelt as the MIG spells it: one release
        (``PAXLST-D03B``) or a message for all its releases (``PAXLST``, matched at
        routing time, so a release added later is routed too); any case. None if the MIG
        has no such type or message."""
        wanted = text.strip().upper()
        for name in self.types:
            if name.upper() == wanted:
                return name
        for mt in self.types.values():
            if mt.message.upper() == wanted:
                return mt.message
        return None

    @property
    def route_types(self) -> str:
        """What a route may name, for a refusal's text: each message with its releases,
        ``PAXLST (PAXLST-D02B, PAXLST-D03B, PAXLST-D05B); GENDEC (GENDEC-1)``."""
        releases: dict[str, list[str]] = {}
        for name, mt in sorted(self.types.items()):
            releases.setdefault(mt.message, []).append(name)
        return "; ".join(f"{message} ({', '.join(names)})"
                         for message, names in sorted(releases.items()))


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"{path}: {exc}") from None


def _table(doc: Mapping[str, object], key: str, where: Path) -> dict[str, object]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise DataError(f"{where}: [{key}] must be a table")
    return value


def _str(doc: Mapping[str, object], key: str, where: Path) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise DataError(f"{where}: {key} must be a non-empty string")
    return value


class _Loader:
    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = roots
        self.directories: dict[str, dict[str, SegmentDef]] = {}
        self.service = read_segments(self._find("service/segments.txt").read_text(),
                                     "service/segments.txt")

    def _find(self, rel: str) -> Path:
        for root in reversed(self.roots):
            if (root / rel).exists():
                return root / rel
        raise DataError(f"MIG data: {rel} not found in {', '.join(map(str, self.roots))}")

    def directory(self, name: str, seen: tuple[str, ...] = ()) -> dict[str, SegmentDef]:
        if name in self.directories:
            return self.directories[name]
        if name in seen:
            raise DataError(f"directory {name}: based_on loops through {seen}")
        folder = self._find(f"directories/{name}")
        segs: dict[str, SegmentDef] = {}
        meta = folder / "directory.toml"
        if meta.exists():
            segs.update(self.directory(_str(_read_toml(meta), "based_on", meta), (*seen, name)))
        own = folder / "segments.txt"
        if own.exists():
            segs.update(read_segments(own.read_text(), str(own)))
        self.directories[name] = segs
        return segs

    def type_folders(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for root in self.roots:
            for mig in sorted((root / "types").glob("*/mig.toml")):
                found[mig.parent.name] = mig.parent  # later roots override earlier ones
        return found

    def load(self, folder: Path) -> MessageType:
        path = folder / "mig.toml"
        doc = _read_toml(path)
        xml = _table(doc, "xml", path)
        namespace, root = _str(xml, "namespace", path), _str(xml, "root", path)
        profile, unh = None, None
        associations: tuple[str, ...] = ()
        if "edifact" in doc:
            profile, unh, associations = self.edifact(doc, folder, path)
        schema_text = self.schema_text(xml, folder, path, profile, namespace)
        schema = compile_schema(schema_text, folder / "schema.xsd")
        rules_table = _table(doc, "rules", path)
        rules, lean = _compile_rules(rules_table, folder, path)
        local = rules_table.get("message_local", False)
        if not isinstance(local, bool):
            raise DataError(f"{path}: [rules] message_local must be true or false")
        if local and profile is None:
            raise DataError(f"{path}: [rules] message_local is for EDIFACT types")
        return MessageType(_str(doc, "name", path), str(doc.get("title", "")), namespace, root,
                           schema, schema_text, rules, profile, unh, folder, associations,
                           local, lean, profile is not None and "schema" not in xml)

    def edifact(self, doc: Mapping[str, object], folder: Path, path: Path
                ) -> tuple[EdifactProfile, tuple[str, str, str, str], tuple[str, ...]]:
        ed = _table(doc, "edifact", path)
        unh = (_str(ed, "message", path), _str(ed, "version", path), _str(ed, "release", path),
               _str(ed, "agency", path))
        segs = {**self.service, **self.directory(_str(ed, "directory", path))}
        if "segments" in ed:
            # The type's own specification of a segment, where its guideline departs from
            # the directory (the file says why, segment by segment).
            own = folder / _str(ed, "segments", path)
            segs.update(read_segments(own.read_text(), str(own)))
        structure_file = folder / _str(ed, "structure", path)
        structure = read_structure(structure_file.read_text(), str(structure_file),
                                   f"M_{unh[0]}")
        _check_defined(structure, segs, structure_file)
        codes = _codes(_table(doc, "codes", path), segs, path)
        associations = _strings(ed, "association", path)
        if associations:
            # 0057 may be absent, or one of these (ISO 9735 UNH S009: "association assigned
            # code", e.g. IATA for the WCO/IATA/ICAO PAXLST); checked like any code list.
            codes["UNH/0057"] = frozenset(associations)
        profile = EdifactProfile(_str(doc, "name", path), unh[0], structure, segs, codes,
                                 _str(doc, "name", path))
        return profile, unh, associations

    def schema_text(self, xml: Mapping[str, object], folder: Path, path: Path,
                    profile: EdifactProfile | None, namespace: str) -> bytes:
        if "schema" in xml:
            return (folder / _str(xml, "schema", path)).read_bytes()
        if profile is None:
            raise DataError(f"{path}: an XML type needs [xml] schema")
        return schema_for(profile, self.service, namespace).encode()


def _strings(doc: Mapping[str, object], key: str, where: Path) -> tuple[str, ...]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise DataError(f"{where}: {key} must be a list of non-empty strings")
    return tuple(value)


def _codes(table: Mapping[str, object], segs: Mapping[str, SegmentDef], where: Path
           ) -> dict[str, frozenset[str]]:
    """``[codes]``: by data element id (``"1225"``), or by segment tag and data element id
    (``"BGM/1001"``) where one data element has different code lists in different segments;
    the segment's list then replaces the element's there."""
    codes: dict[str, frozenset[str]] = {}
    for key, values in table.items():
        if not isinstance(values, list):
            raise DataError(f"{where}: [codes] {key} must be a list")
        tag, _, did = key.rpartition("/")
        if tag and (tag not in segs or not _uses(segs[tag], did)):
            raise DataError(f"{where}: [codes] {key}: segment {tag} has no data element {did}")
        codes[key] = frozenset(map(str, values))
    return codes


def _uses(sdef: SegmentDef, did: str) -> bool:
    return any(e.id == did or any(c.id == did for c in e.components) for e in sdef.elements)


def _check_defined(group: GroupDef, segs: Mapping[str, SegmentDef], where: Path) -> None:
    for child in group.children:
        if isinstance(child, GroupDef):
            _check_defined(child, segs, where)
        elif isinstance(child, SegmentRef) and child.tag not in segs:
            raise DataError(f"{where}: segment {child.tag} has no definition in the directory")


# The MIG's own files are trusted, but they are still read without network or DTDs.
_TRUSTED = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)


def compile_schema(text: bytes, base: Path) -> etree.XMLSchema:
    """A message type's XML Schema from its text, compiled (``base``: the file it is, for
    its includes and the error). Each compiled schema is used by one thread at a time:
    :mod:`singlewindow.mig.xmlcheck` compiles more from the same text for concurrent checks.
    """
    try:
        doc = etree.fromstring(text, _TRUSTED, base_url=str(base))
        return etree.XMLSchema(doc)
    except (etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
        raise DataError(f"{base}: {exc}") from None


def _compile_rules(rules: Mapping[str, object], folder: Path, path: Path
                   ) -> tuple[isoschematron.Schematron | None, etree._ElementTree | None]:
    """The type's Schematron, compiled by lxml (ISO skeleton) and, where it can be, to the
    lean XSLT that runs (:mod:`rules`); the skeleton's also checks the schema."""
    if "schematron" not in rules:
        return None, None
    file = folder / _str(rules, "schematron", path)
    try:
        doc = etree.parse(str(file), _TRUSTED)
        # store_xslt: xmlcheck makes one transform per concurrent check from it
        iso = isoschematron.Schematron(doc, store_xslt=True)
        lean = compile_lean(doc)
        if lean is not None:
            etree.XSLT(lean)  # a test the skeleton let through but XSLT refuses: say so now
        return iso, lean
    except (OSError, etree.XMLSyntaxError, etree.SchematronParseError,
            etree.XSLTParseError) as exc:
        raise DataError(f"{file}: {exc}") from None


def roots_from_env() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("SW_MIG_PATH", "").split(":") if p]
    return [DATA, *extra]


def load(roots: Sequence[Path] | None = None) -> Registry:
    """Read and compile every message type under ``roots`` (default: shipped + SW_MIG_PATH)."""
    loader = _Loader(list(roots) if roots is not None else roots_from_env())
    types: dict[str, MessageType] = {}
    for folder in loader.type_folders().values():
        mt = loader.load(folder)
        types[mt.name] = mt
    by_unh = {mt.unh: mt for mt in types.values() if mt.unh is not None}
    by_xml = {(mt.namespace, mt.root): mt for mt in types.values()}
    return Registry(types, by_unh, by_xml, loader.service)


_lock = threading.Lock()
_current: Registry | None = None


def registry() -> Registry:
    """The compiled MIG, loaded on first use."""
    global _current
    with _lock:
        if _current is None:
            _current = load()
        return _current


def reload(roots: Sequence[Path] | None = None) -> Registry:
    """Load the MIG again (SIGHUP). On a data error the previous MIG stays in force."""
    global _current
    fresh = load(roots)
    with _lock:
        _current = fresh
    return fresh
