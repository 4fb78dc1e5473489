"""Builders of valid (and deliberately broken) EDIFACT and XML submissions for the MIG tests
and the benchmark. Values follow the WCO/IATA PAXLST guide's examples in shape."""

from __future__ import annotations

import io
import itertools
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

from singlewindow.mig import loader
from singlewindow.mig.loader import Registry

HEADER_V4 = "UNA:+.?*'"


def person(i: int) -> list[str]:
    return [
        f"NAD+FL+++DOE{i}:JOHN:ALBERT+1 MAIN STREET+AMSTERDAM++1011AB+NL'",
        "ATT+2++M'",
        f"DTM+329:19{60 + i % 40:02d}0{1 + i % 9}15:102'",
        "LOC+178+NLAMS'",
        "LOC+179+USJFK'",
        "NAT+2+NLD'",
        f"RFF+AVF:ABC{i}'",
        f"DOC+P:110:111+XP{i:07d}'",
        "DTM+36:20300101:102'",
        "LOC+91+NLD'",
    ]


def paxlst_message(ref: str, persons: int, release: str = "03B", start: int = 0) -> list[str]:
    body = [
        f"UNH+{ref}+PAXLST:D:{release}:UN'",
        "BGM+745'",
        "NAD+MS+++OPERATIONS DESK'",
        "COM+0031201234567:TE'",
        "TDT+20+KL0641+++KL'",
        "LOC+125+NLAMS'",
        "DTM+189:0401011200:201'",
        "LOC+87+USJFK'",
        "DTM+232:0401011800:201'",
    ]
    for i in range(start, start + persons):
        body += person(i)
    body.append(f"CNT+42:{persons}'")
    body.append(f"UNT+{len(body) + 1}+{ref}'")
    return body


def with_unt(segs: list[str], ref: str = "M0") -> list[str]:
    """``segs`` with its UNT (if any) replaced by one that counts the segments (0074)."""
    body = [s for s in segs if not s.startswith("UNT")]
    return [*body, f"UNT+{len(body) + 1}+{ref}'"]


def interchange(messages: list[list[str]], ref: str = "REF1", syntax: str = "UNOA:4",
                una: str = HEADER_V4, sep: str = "\n") -> bytes:
    segs = [f"UNB+{syntax}+SENDER:ZZZ+NLSW:ZZZ+240101:1200+{ref}'"]
    for m in messages:
        segs += m
    segs.append(f"UNZ+{len(messages)}+{ref}'")
    return (una + sep + sep.join(segs) + sep).encode("latin-1")


def broken(kind: str) -> bytes:
    """A PAXLST interchange with one error of ``kind`` (an error class's name, lower case)."""
    msg = paxlst_message("M0", 1)
    if kind == "syntax":
        return interchange([msg]).replace(b"UNZ+1+REF1'\n", b"")
    if kind == "count":
        return interchange([msg]).replace(b"UNZ+1+", b"UNZ+2+")
    if kind == "structure":
        msg.insert(2, "QTY+1:1'")
    elif kind == "format":
        msg[1] = "BGM+745+" + "X" * 40 + "'"
    elif kind == "codelist":
        msg[1] = "BGM+745++99'"
    elif kind == "rule":  # a date of birth in month 99
        at = next(i for i, s in enumerate(msg) if s.startswith("DTM+329"))
        msg[at] = "DTM+329:19609915:102'"
    return interchange([with_unt(msg)])


def paxlst(persons: int = 2, messages: int = 1, release: str = "03B",
           unique: bool = True) -> bytes:
    return interchange([paxlst_message(f"M{n}", persons, release, n * persons if unique else 0)
                        for n in range(messages)])


def paxlst_of_size(megabytes: float, release: str = "03B", unique: bool = True) -> bytes:
    """About ``megabytes`` of PAXLST: messages of 200 persons each (~70 kB).

    ``unique``: every person differs (names, documents); otherwise each message lists the
    same 200 persons, as a carrier resending a manifest would.
    """
    one = len(paxlst(200, 1, release))
    count = max(1, round(megabytes * 1024 * 1024 / one))
    return paxlst(200, count, release, unique)


VALUES = ["", "X", "9", "12.5", "-3", "1,", ",", "ABC123", "A" * 40, "A" * 400, "?+", "?'",
           "a&b<c>", "É", "~W~", "*", "AB*CD", "::", "++", "\n", "  ", "0" * 20, "ZZZ", "FL",
           "P", "329", "102", "NLD", "NL"]


def mutate(rnd: random.Random, segs: list[str]) -> list[str]:
    """``segs`` broken in 1-3 places, the ways real submissions break: values too long,
    digits in alphabetic data, unknown codes, missing, repeated, moved or foreign segments,
    release and repetition characters, foreign characters, cut segments."""
    segs = list(segs)
    for _ in range(rnd.randint(1, 3)):
        i = rnd.randrange(len(segs))
        op = rnd.randrange(9)
        if op == 0:  # drop a segment
            del segs[i]
        elif op == 1:  # repeat a segment
            segs.insert(i, segs[i])
        elif op == 2:  # move a segment
            segs.insert(rnd.randrange(len(segs)), segs.pop(i))
        elif op in (3, 4, 5):  # replace one value (element or component)
            body = segs[i].rstrip("'")
            elements = body.split("+")
            e = rnd.randrange(len(elements))
            comps = elements[e].split(":")
            comps[rnd.randrange(len(comps))] = rnd.choice(VALUES)
            elements[e] = ":".join(comps)
            segs[i] = "+".join(elements) + "'"
        elif op == 6:  # add elements or components at the end
            segs[i] = segs[i].rstrip("'") + rnd.choice(["+X", ":Y", "+", "++Z", ":"]) + "'"
        elif op == 7:  # a segment from elsewhere in the directory, or a made-up one
            segs.insert(i, rnd.choice(["FTX+AAA+++TEXT'", "QTY+1:1'", "nad+FL'", "ZZZ+1'",
                                       "UNS+D'", "CNT+42:1'", "GEI+4'", "NA'", "DOC+P'"]))
        else:  # cut the segment short
            segs[i] = segs[i][:rnd.randrange(1, max(2, len(segs[i])))].rstrip("'") + "'"
    return segs


class _GeneratedReader(io.RawIOBase):
    """A read-only file whose bytes come from a generator, so the input is never held."""

    def __init__(self, parts: Iterator[bytes]) -> None:
        self.parts = parts
        self.left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self.left:
            part = next(self.parts, None)
            if part is None:
                return 0
            self.left = part
        n = min(len(buffer), len(self.left))
        buffer[:n] = self.left[:n]
        self.left = self.left[n:]
        return n


def paxlst_stream(megabytes: float, unique: bool = False) -> tuple[io.BufferedReader, int]:
    """The interchange :func:`paxlst_of_size` builds, as a file generated while it is read
    (one message at a time), and its size in bytes."""
    one = len(paxlst(200, 1))
    count = max(1, round(megabytes * 1024 * 1024 / one))
    una, ref = HEADER_V4 + "\n", "REF1"
    head = f"UNB+UNOA:4+SENDER:ZZZ+NLSW:ZZZ+240101:1200+{ref}'\n"
    tail = f"UNZ+{count}+{ref}'\n"

    def message(n: int) -> bytes:
        return ("\n".join(paxlst_message(f"M{n}", 200, "03B", n * 200 if unique else 0))
                + "\n").encode("latin-1")

    size = len(una) + len(head) + len(tail) + sum(len(message(n)) for n in range(count))
    parts = itertools.chain((una.encode(), head.encode()), map(message, range(count)),
                            (tail.encode(),))
    return io.BufferedReader(_GeneratedReader(parts)), size


def iftdgn() -> bytes:
    msg = [
        "UNH+1+IFTDGN:D:03A:UN'",
        "BGM+890+DGN0001+9'",
        "DTM+137:202401011200:203'",
        "RFF+VON:V123'",
        "TDT+20+V123+1++MSC:172:20+++9074729:146:11:MSC ANNA:PA'",
        "LOC+5+NLRTM'",
        "DTM+132:202401021800:203'",
        "NAD+CA+MSC:160:20'",
        "CTA+IC+:J. JANSEN'",
        "COM+0031101234567:TE'",
        "EQD+CN+MSCU1234567'",
        "CNI+1+BL0001'",
        "LOC+9+CNSHA'",
        "GID+1+10:DR'",
        "FTX+AAA+++ACETONE'",
        "DGS+IMD+3+1090+-020:CEL+2+F-E'",
        "FTX+AAD+++ACETONE'",
        "MEA+AAE+AAB+KGM:1000'",
        "SGP+MSCU1234567+10'",
    ]
    msg.append(f"UNT+{len(msg) + 1}+1'")
    return interchange([msg])


GENDEC = """<?xml version="1.0" encoding="UTF-8"?>
<GeneralDeclaration xmlns="urn:singlewindow:mig:gendec:1">
  <DocumentId>GD-2024-0001</DocumentId>
  <Issued>2024-01-01T10:00:00Z</Issued>
  <Function>Original</Function>
  <Movement>Arrival</Movement>
  <Ship>
    <Name>MSC ANNA</Name>
    <ImoNumber>{imo}</ImoNumber>
    <CallSign>3FAB4</CallSign>
    <Flag>PA</Flag>
    <GrossTonnage>{gross}</GrossTonnage>
    <NetTonnage>94000</NetTonnage>
  </Ship>
  <PortCall>
    <Port>NLRTM</Port>
    <VoyageNumber>V123</VoyageNumber>
    <ArrivalEstimated>2024-01-02T18:00:00Z</ArrivalEstimated>
    <DepartureEstimated>2024-01-04T06:00:00Z</DepartureEstimated>
    <LastPort>CNSHA</LastPort>
  </PortCall>
  <Master>K. PAPADOPOULOS</Master>
  <CrewCount>{crew}</CrewCount>
  <PassengerCount>0</PassengerCount>
</GeneralDeclaration>
"""


def gendec(imo: str = "9074729", gross: str = "194000", crew: str = "24") -> bytes:
    return GENDEC.format(imo=imo, gross=gross, crew=crew).encode()


def declaration_response(status: str = "Accepted", reference: str = "GD-2024-0001") -> bytes:
    """A valid DECLARATION-RESPONSE-1: an agency's answer to a declaration (SPEC R4.3)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<DeclarationResponse xmlns="urn:singlewindow:mig:declaration-response:1">'
        "<ResponseId>R1</ResponseId><Issued>2024-01-01T10:00:00Z</Issued>"
        f"<Agency>CUSTOMS</Agency><DeclarationReference>{reference}</DeclarationReference>"
        f"<DeclarationType>GENDEC-1</DeclarationType><Status>{status}</Status>"
        "</DeclarationResponse>\n").encode()


def overlay(folder: Path, names: tuple[str, ...], local: bool,
            rules: str | None = None) -> Registry:
    """The shipped MIG with these EDIFACT types' rules message-local or not (and
    PAXLST D.03B's rules replaced by ``rules``)."""
    for name in names:
        target = folder / "types" / name
        shutil.copytree(loader.DATA / "types" / name, target)
        toml = (target / "mig.toml").read_text()
        changed = toml.replace("message_local = true", f"message_local = {str(local).lower()}")
        assert changed == toml or not local
        (target / "mig.toml").write_text(changed)
        if rules is not None and name == "paxlst-d03b":
            (target / "rules.sch").write_text(rules)
    reg = loader.load([loader.DATA, folder])
    assert reg.types["PAXLST-D03B"].rules_message_local is local
    return reg
