"""Business rules: an ISO Schematron schema compiled once into a lean XSLT of our own.

Where it sits in the mail flow: at MIG load time (:mod:`loader` compiles each type's
``rules.sch``); :func:`xmlcheck.rule_findings` then applies the result to every XML
submission and, rule set by rule set, to each message of a converted interchange in the
transport's worker threads (``validate._SchemaChecks``).

Operators write the rules as ISO Schematron; that stays the rule language. What runs is
not the ISO skeleton's XSLT (``lxml.isoschematron``) but one made here from the same
schema, which gives the same findings (rule id, text with its ``value-of`` parts, location
in the skeleton's full-path notation, pattern by pattern in document order) for far less
work. The skeleton's stylesheet walks the whole document twice per pattern (once in the
default mode under ``svrl:active-pattern``, once in the pattern's mode, over every element
and node) and writes an ``svrl:fired-rule`` for every node a rule applies to. This one:

- visits, per pattern, only the elements a rule of the pattern can apply to: when every
  rule context (each alternative of it) ends in a step that names an element, the pattern
  applies templates to ``//name | //other`` (document order, as the skeleton's walk), with
  the skeleton's first-matching-rule priorities and a template that does nothing for the
  candidates no rule matches; a pattern with another context is walked as the skeleton
  walks it (the root node, then what its walk visits: see ``_Compiler.walk``);
- writes only failed asserts and successful reports: ``<f p="pattern number" id="rule id"
  test="the test" kind="assert|report" location="full path">text</f>``;
- binds a rule's ``let``s only where a test needs them: each test is taken apart at
  ``or``, ``and`` and ``not()`` and its parts evaluated as far as XPath would evaluate
  them, each let bound just before the first part that needs it (:meth:`_Compiler._test`);
- writes a let used once, outside any predicate, into the one expression that uses it
  (:class:`_Inliner`); writing every let into its uses was measured slower (the shared
  ones are then evaluated again and again: see bench/README.md).

One difference from the skeleton, for broken rule sets only: a let that no evaluated
part of a test needs is never computed, so a let whose evaluation would fail no longer
stops the check where its value is not used.

A schema using what this subset does not cover (phases, diagnostics, properties,
``subject``, abstract or extending rules, pattern-level lets, rich text in messages,
foreign elements) is not compiled here: :func:`compile_lean` returns ``None`` and the ISO
skeleton's transform runs, as before.
"""

from __future__ import annotations

from collections.abc import Callable

from lxml import etree, isoschematron

SCH = "http://purl.oclc.org/dsdl/schematron"
XSL = "http://www.w3.org/1999/XSL/Transform"
_S = f"{{{SCH}}}"
_X = f"{{{XSL}}}"

#: The output's element for one finding.
FINDING = "f"


class Unsupported(Exception):
    """The schema uses something the lean compiler leaves to the ISO skeleton."""


def compile_lean(schematron: etree._ElementTree | etree._Element) -> etree._ElementTree | None:
    """The lean XSLT (a stylesheet document) for ``schematron``, after the ISO include
    and abstract-pattern expansion steps lxml's Schematron applies too; ``None`` when the
    schema needs the ISO skeleton."""
    tree = schematron if isinstance(schematron, etree._ElementTree) else (
        schematron.getroottree())
    expanded = isoschematron.iso_abstract_expand(isoschematron.iso_dsdl_include(tree))
    try:
        return _Compiler(expanded.getroot()).stylesheet()
    except Unsupported:
        return None


def _clean(el: etree._Element, allowed: set[str], attrs: set[str]) -> None:
    """Raise :class:`Unsupported` unless ``el`` has only ``allowed`` Schematron children
    (comments and processing instructions aside) and only ``attrs`` attributes."""
    for name in el.attrib:
        if name not in attrs:
            raise Unsupported(f"{el.tag} @{name}")
    for child in el:
        if not isinstance(child.tag, str):
            continue
        if not child.tag.startswith(_S) or child.tag[len(_S):] not in allowed:
            raise Unsupported(f"{el.tag}/{child.tag}")


_DOC = {"title", "p"}  # documentation, no effect on validation
_SCHEMA_ATTRS = {"id", "queryBinding", "schemaVersion", "icon", "see", "fpi",
                 "{http://www.w3.org/XML/1998/namespace}lang",
                 "{http://www.w3.org/XML/1998/namespace}space"}
_PATTERN_ATTRS = {"id", "name", "see", "fpi", "icon",
                  "{http://www.w3.org/XML/1998/namespace}lang"}
_RULE_ATTRS = {"id", "context", "role", "flag", "see", "fpi", "icon",
               "{http://www.w3.org/XML/1998/namespace}lang"}
_TEST_ATTRS = {"id", "test", "role", "flag", "see", "fpi", "icon",
               "{http://www.w3.org/XML/1998/namespace}lang"}


class _Compiler:
    def __init__(self, schema: etree._Element) -> None:
        if schema.tag != f"{_S}schema":
            raise Unsupported("not an ISO Schematron schema")
        if schema.get("queryBinding", "xslt").lower() not in ("xslt", "xslt1", "xpath"):
            raise Unsupported("query binding")
        _clean(schema, {"ns", "pattern", "let"} | _DOC, _SCHEMA_ATTRS)
        self.schema = schema
        self.namespaces = {}
        for ns in schema.iterchildren(f"{_S}ns"):
            prefix, uri = ns.get("prefix"), ns.get("uri")
            if not prefix or uri is None:
                raise Unsupported("ns without prefix or uri")
            self.namespaces[prefix] = uri
        nsmap = {"xsl": XSL, **self.namespaces}
        if len(nsmap) != len(self.namespaces) + 1:
            raise Unsupported("the prefix xsl is taken")
        self.root = etree.Element(f"{_X}stylesheet", nsmap=nsmap, version="1.0")
        # What the skeleton's walk visits below each node, decided for the whole schema as
        # it decides it: attributes too if any rule context has "@" or "attribute" in it;
        # elements only if any has "(" (its "only-child-elements"); else elements,
        # comments and processing instructions.
        contexts = [rule.get("context", "") for rule in schema.iter(f"{_S}rule")]
        walk = "*" if any("(" in c for c in contexts) else "*|comment()|processing-instruction()"
        if any("@" in c or "attribute" in c for c in contexts):
            walk = f"@*|{walk}"
        self.walk = walk

    def stylesheet(self) -> etree._ElementTree:
        root = self.root
        etree.SubElement(root, f"{_X}output", method="xml", indent="no")
        for let in self.schema.iterchildren(f"{_S}let"):
            _clean(let, set(), {"name", "value"})
            param = etree.SubElement(root, f"{_X}param", name=_required(let, "name"))
            if let.get("value"):
                param.set("select", let.get("value", ""))
        self._locations()
        top = etree.SubElement(root, f"{_X}template", match="/")
        out = etree.SubElement(top, "r")
        for number, pattern in enumerate(self.schema.iterchildren(f"{_S}pattern")):
            self._pattern(number, pattern, out)
        return root.getroottree()

    def _locations(self) -> None:
        """The skeleton's full-path notation of a location, as templates of mode ``loc``:
        ``/*[local-name()='X' and namespace-uri()='urn:...'][2]`` per element (the index
        only when the element has a sibling of its local name), ``name()`` steps in no
        namespace, ``/@name`` for an attribute; other nodes by XSLT's built-in rules."""
        root = self.root
        el = etree.SubElement(root, f"{_X}template", match="*", mode="loc")
        etree.SubElement(el, f"{_X}apply-templates", select="parent::*", mode="loc")
        _text(el, "/")
        choose = etree.SubElement(el, f"{_X}choose")
        plain = etree.SubElement(choose, f"{_X}when", test="namespace-uri()=''")
        etree.SubElement(plain, f"{_X}value-of", select="name()")
        _index(plain, "name()=name(current())")
        named = etree.SubElement(choose, f"{_X}otherwise")
        _text(named, "*[local-name()='")
        etree.SubElement(named, f"{_X}value-of", select="local-name()")
        _text(named, "' and namespace-uri()='")
        etree.SubElement(named, f"{_X}value-of", select="namespace-uri()")
        _text(named, "']")
        _index(named, "local-name()=local-name(current())")
        at = etree.SubElement(root, f"{_X}template", match="@*", mode="loc")
        _text(at, "/")
        choose = etree.SubElement(at, f"{_X}choose")
        plain = etree.SubElement(choose, f"{_X}when", test="namespace-uri()=''")
        _text(plain, "@")
        etree.SubElement(plain, f"{_X}value-of", select="name()")
        named = etree.SubElement(choose, f"{_X}otherwise")
        _text(named, "@*[local-name()='")
        etree.SubElement(named, f"{_X}value-of", select="local-name()")
        _text(named, "' and namespace-uri()='")
        etree.SubElement(named, f"{_X}value-of", select="namespace-uri()")
        _text(named, "']")

    def _pattern(self, number: int, pattern: etree._Element, out: etree._Element) -> None:
        _clean(pattern, {"rule"} | _DOC, _PATTERN_ATTRS)
        mode = f"P{number}"
        rules = list(pattern.iterchildren(f"{_S}rule"))
        names: set[str] | None = set()
        for rule in rules:
            ends = _element_ends(_required(rule, "context"))
            names = None if ends is None or names is None else names | ends
        root = self.root
        if names is not None:
            if names:
                select = " | ".join(f"//{n}" for n in sorted(names))
                etree.SubElement(out, f"{_X}apply-templates", select=select, mode=mode)
            # a candidate no rule matches: nothing (its descendants are candidates too)
            etree.SubElement(root, f"{_X}template", match="node()|@*", priority="-2",
                             mode=mode)
            walk = None
        else:
            etree.SubElement(out, f"{_X}apply-templates", select="/", mode=mode)
            walk = self.walk
            etree.SubElement(root, f"{_X}template", match="text()", priority="-1", mode=mode)
            rest = etree.SubElement(root, f"{_X}template", match="@*|node()", priority="-2",
                                    mode=mode)
            etree.SubElement(rest, f"{_X}apply-templates", select=walk, mode=mode)
        for n, rule in enumerate(rules):
            self._rule(number, mode, 1000 - n, rule, walk)

    def _rule(self, number: int, mode: str, priority: int, rule: etree._Element,
              walk: str | None) -> None:
        _clean(rule, {"let", "assert", "report"} | _DOC, _RULE_ATTRS)
        template = etree.SubElement(self.root, f"{_X}template", match=rule.get("context", ""),
                                    priority=str(priority), mode=mode)
        lets = _Lets()
        inline = _Inliner(rule)
        declared: set[str] = set()  # at the template's top level, so far
        for child in rule:
            if not isinstance(child.tag, str):
                continue
            kind = child.tag[len(_S):]
            if kind == "let":
                _clean(child, set(), {"name", "value"})
                name = _required(child, "name")
                if name not in inline.values:
                    lets.add(name, inline(_required(child, "value")))
            elif kind in ("assert", "report"):
                self._test(number, kind, child, template, lets.copy(), declared, inline)
        if walk is not None:
            etree.SubElement(template, f"{_X}apply-templates", select=walk, mode=mode)

    def _test(self, number: int, kind: str, test: etree._Element, template: etree._Element,
              lets: _Lets, declared: set[str], inline: _Inliner) -> None:
        """The assert (or report) ``test`` into ``template``: a finding when its test is
        false (true). Its test is taken apart at ``or``, ``and`` and ``not()`` so that each
        part is evaluated only when XPath's own order of evaluation would evaluate it, and
        the rule's lets each part needs are bound just before it (the first time on each
        path): a let no evaluated part needs is not computed at all. Should that take
        apart too much, the test is evaluated whole, after the lets it needs."""
        _clean(test, {"value-of", "name"}, _TEST_ATTRS)
        expr = _required(test, "test")
        selects = []
        for part in test:
            if isinstance(part.tag, str):
                if part.tag == f"{_S}value-of":
                    _clean(part, set(), {"select"})
                    selects.append(inline(part.get("select") or "."))
                else:  # name
                    _clean(part, set(), {"path"})
                    selects.append(inline(f"name({part.get('path')})" if part.get("path")
                                          else "name(.)"))

        def finding(parent: etree._Element, scope: set[str]) -> None:
            for select in selects:
                lets.bind(parent, select, scope)
            found = etree.SubElement(parent, FINDING)
            found.set("p", str(number))
            found.set("kind", kind)
            found.set("test", _literal(expr))
            if test.get("id") is not None:
                found.set("id", _literal(test.get("id", "")))
            location = etree.SubElement(found, f"{_X}attribute", name="location")
            etree.SubElement(location, f"{_X}apply-templates", select=".", mode="loc")
            _text(found, test.text or "")
            values = iter(selects)
            for part in test:
                if isinstance(part.tag, str):
                    etree.SubElement(found, f"{_X}value-of", select=next(values))
                _text(found, part.tail or "")

        on_true, on_false = (None, finding) if kind == "assert" else (finding, None)
        trial = etree.Element("trial")
        scope = set(declared)
        _branch(inline(expr), trial, scope, lets, on_true, on_false)
        if sum(1 for _ in trial.iter()) > _MAX_SPLIT:
            trial, scope = etree.Element("trial"), set(declared)
            _atomic(inline(expr), trial, scope, lets, on_true, on_false)
        for el in list(trial):
            template.append(el)
        declared |= scope  # what the top level bound stays bound for the next tests


#: A test taken apart into more than this many XSLT nodes is evaluated whole instead.
_MAX_SPLIT = 2000

#: Where, in a test taken apart, the true or the false outcome goes on (``None``: nowhere).
_Then = Callable[[etree._Element, set[str]], None] | None


class _Inliner:
    """A rule's lets that are used once, and not inside a predicate, written into the one
    expression that uses them (in parentheses): evaluated where they would be, in the same
    context, without an XSLT variable of their own. Each XSLT instruction costs about a
    microsecond in libxslt, as much as a simple XPath expression; the rules of dates
    bind a dozen lets per date (see bench/README.md)."""

    def __init__(self, rule: etree._Element) -> None:
        lets: dict[str, str] = {}
        expressions: list[str] = []
        for child in rule.iter(f"{_S}let", f"{_S}assert", f"{_S}report", f"{_S}value-of",
                               f"{_S}name"):
            if child.tag == f"{_S}let":
                if child.get("name") and child.get("value"):
                    lets[child.get("name", "")] = child.get("value", "")
                    expressions.append(child.get("value", ""))
            else:
                expressions += [child.get(a, "") for a in ("test", "select", "path")
                                if child.get(a)]
        uses: dict[str, int] = {}
        nested: set[str] = set()
        for expr in expressions:
            for name, depth in _references(expr):
                uses[name] = uses.get(name, 0) + 1
                if depth:
                    nested.add(name)
        self.values = {name: value for name, value in lets.items()
                       if uses.get(name) == 1 and name not in nested}

    def __call__(self, expr: str) -> str:
        if not self.values:
            return expr
        tokens = _tokens(expr)
        if tokens is None:
            raise Unsupported(f"cannot read {expr!r}")
        out, at = [], 0
        for kind, a, b in tokens:
            if kind == "var" and expr[a + 1:b] in self.values:
                out += [expr[at:a], "(", self(self.values[expr[a + 1:b]]), ")"]
                at = b
        out.append(expr[at:])
        return "".join(out)


def _references(expr: str) -> list[tuple[str, int]]:
    """The variables ``expr`` refers to, each with the depth of predicates it is in."""
    tokens = _tokens(expr)
    if tokens is None:
        raise Unsupported(f"cannot read {expr!r}")
    found, depth = [], 0
    for kind, a, b in tokens:
        if kind == "[":
            depth += 1
        elif kind == "]":
            depth -= 1
        elif kind == "var":
            found.append((expr[a + 1:b], depth))
    return found


class _Lets:
    """A rule's lets seen so far: what each needs, bound on demand in the rule's order."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.value: dict[str, str] = {}
        self.needs: dict[str, set[str]] = {}

    def add(self, name: str, value: str) -> None:
        if name in self.value:
            raise Unsupported(f"let {name} twice in a rule")
        own = {v for v in _variables(value) if v in self.value}
        for v in list(own):
            own |= self.needs[v]
        self.order.append(name)
        self.value[name] = value
        self.needs[name] = own

    def copy(self) -> _Lets:
        other = _Lets()
        other.order, other.value, other.needs = list(self.order), dict(self.value), {
            k: set(v) for k, v in self.needs.items()}
        return other

    def needed(self, expr: str) -> set[str]:
        """The lets ``expr`` needs, directly or through other lets."""
        wanted = {v for v in _variables(expr) if v in self.value}
        for v in list(wanted):
            wanted |= self.needs[v]
        return wanted

    def unbound(self, expr: str, scope: set[str]) -> bool:
        """Whether ``expr`` needs a let that ``scope`` has not bound."""
        return not self.needed(expr) <= scope

    def bind(self, parent: etree._Element, expr: str, scope: set[str]) -> None:
        """Bind in ``parent`` the lets ``expr`` needs that ``scope`` has not, in order."""
        wanted = self.needed(expr)
        for name in self.order:
            if name in wanted and name not in scope:
                etree.SubElement(parent, f"{_X}variable", name=name, select=self.value[name])
                scope.add(name)


def _atomic(expr: str, parent: etree._Element, scope: set[str], lets: _Lets,
            on_true: _Then, on_false: _Then) -> None:
    lets.bind(parent, expr, scope)
    if on_true is None and on_false is None:
        return
    if on_true is None or on_false is None:
        then = on_true if on_true is not None else on_false
        assert then is not None
        test = f"({expr})" if on_true is not None else f"not({expr})"
        branch = etree.SubElement(parent, f"{_X}if", test=test)
        then(branch, set(scope))
        return
    choose = etree.SubElement(parent, f"{_X}choose")
    on_true(etree.SubElement(choose, f"{_X}when", test=expr), set(scope))
    on_false(etree.SubElement(choose, f"{_X}otherwise"), set(scope))


def _branch(expr: str, parent: etree._Element, scope: set[str], lets: _Lets,
            on_true: _Then, on_false: _Then) -> None:
    """Emit into ``parent`` what evaluates ``expr`` and goes on with ``on_true`` or
    ``on_false``, evaluating ``or`` and ``and`` operands left to right and only as far as
    needed, as XPath does."""
    tokens = _tokens(expr)
    if tokens is None or not lets.unbound(expr, scope):
        # nothing left to bind: one evaluation of the whole is cheaper than its parts
        _atomic(expr, parent, scope, lets, on_true, on_false)
        return
    inner = _unwrap(expr, tokens)
    if inner is not None:
        _branch(inner, parent, scope, lets, on_true, on_false)
        return
    for op in ("or", "and"):
        parts = _operands(expr, tokens, op)
        if len(parts) > 1:
            # the first operand, and those after it that need no other lets than it
            ahead = scope | lets.needed(parts[0])
            k = 1
            while k < len(parts) - 1 and not lets.unbound(parts[k], ahead):
                k += 1
            if k == len(parts) - 1 and not lets.unbound(parts[k], ahead):
                k = len(parts)
            if k == len(parts):
                _atomic(expr, parent, scope, lets, on_true, on_false)
                return
            first, rest = f" {op} ".join(parts[:k]), f" {op} ".join(parts[k:])

            def go_on(p: etree._Element, s: set[str], rest: str = rest) -> None:
                _branch(rest, p, s, lets, on_true, on_false)
            if op == "or":
                _branch(first, parent, scope, lets, on_true, go_on)
            else:
                _branch(first, parent, scope, lets, go_on, on_false)
            return
    negated = _negated(expr, tokens)
    if negated is not None:
        _branch(negated, parent, scope, lets, on_false, on_true)
        return
    _atomic(expr, parent, scope, lets, on_true, on_false)


# --- a little of XPath 1.0's lexical structure --------------------------------------------

#: (kind, start, end): kind is "lit", "num", "var", "name", "op" or the character
_Token = tuple[str, int, int]


def _tokens(expr: str) -> list[_Token] | None:
    """``expr``'s tokens, or ``None`` if it is nothing this module cares to read."""
    out: list[_Token] = []
    i, n = 0, len(expr)
    while i < n:
        ch = expr[i]
        if ch.isspace():
            i += 1
        elif ch in "'\"":
            end = expr.find(ch, i + 1)
            if end < 0:
                return None
            out.append(("lit", i, end + 1))
            i = end + 1
        elif ch.isdigit() or (ch == "." and i + 1 < n and expr[i + 1].isdigit()):
            j = i + 1
            while j < n and (expr[j].isdigit() or expr[j] == "."):
                j += 1
            out.append(("num", i, j))
            i = j
        elif ch == "$" or ch.isalpha() or ch == "_":
            j = i + 1
            while j < n and (expr[j].isalnum() or expr[j] in "_.-"
                             or (expr[j] == ":" and j + 1 < n and expr[j + 1] != ":"
                                 and expr[j + 1] != "*")):
                j += 1
            out.append(("var" if ch == "$" else "name", i, j))
            i = j
        elif expr.startswith(("!=", "<=", ">=", "::", "//", ".."), i):
            out.append((expr[i:i + 2], i, i + 2))
            i += 2
        else:
            out.append((ch, i, i + 1))
            i += 1
    return out


_BEFORE_OPERAND = {"@", "::", "(", "[", ",", "/", "//", "|", "+", "-", "=", "!=", "<", "<=",
                   ">", ">=", "op"}


def _is_operator(tokens: list[_Token], k: int, expr: str) -> bool:
    """Whether the name token ``k`` is an operator name (``or``, ``and``, ``div``,
    ``mod``): there is a token before it, and that one is not ``@ :: ( [ ,`` nor an
    operator (XPath 1.0, section 3.7)."""
    if k == 0:
        return False
    kind = tokens[k - 1][0]
    if kind == "name" and _is_operator(tokens, k - 1, expr):
        return False
    if kind == "*":  # a multiplication or a name test: after an operand it is an operator
        return True
    return kind not in _BEFORE_OPERAND


def _operands(expr: str, tokens: list[_Token], op: str) -> list[str]:
    """``expr`` split at the ``op`` operators outside parentheses and brackets."""
    parts, depth, start = [], 0, 0
    for k, (kind, a, b) in enumerate(tokens):
        if kind in "([":
            depth += 1
        elif kind in ")]":
            depth -= 1
        elif (depth == 0 and kind == "name" and expr[a:b] == op
              and _is_operator(tokens, k, expr)):
            parts.append(expr[start:a].strip())
            start = b
    parts.append(expr[start:].strip())
    return parts if all(parts) else [expr]


def _closing(tokens: list[_Token], k: int) -> int:
    """The index of the token that closes the parenthesis at token ``k``."""
    depth = 0
    for j in range(k, len(tokens)):
        kind = tokens[j][0]
        if kind in "([":
            depth += 1
        elif kind in ")]":
            depth -= 1
            if depth == 0:
                return j
    return -1


def _unwrap(expr: str, tokens: list[_Token]) -> str | None:
    """``a`` for ``(a)``: the whole expression in parentheses, with nothing after them."""
    if len(tokens) >= 2 and tokens[0][0] == "(" and _closing(tokens, 0) == len(tokens) - 1:
        return expr[tokens[0][2]:tokens[-1][1]].strip()
    return None


def _negated(expr: str, tokens: list[_Token]) -> str | None:
    """``a`` for ``not(a)``: the whole expression a call of ``not``."""
    if (len(tokens) >= 3 and tokens[0][0] == "name" and expr[tokens[0][1]:tokens[0][2]]
            == "not" and tokens[1][0] == "(" and _closing(tokens, 1) == len(tokens) - 1):
        inner = expr[tokens[1][2]:tokens[-1][1]].strip()
        if inner and "," not in [t[0] for t in _top(tokens[2:-1])]:
            return inner
    return None


def _top(tokens: list[_Token]) -> list[_Token]:
    """The tokens outside parentheses and brackets."""
    out, depth = [], 0
    for t in tokens:
        if t[0] in "([":
            depth += 1
        elif t[0] in ")]":
            depth -= 1
        elif depth == 0:
            out.append(t)
    return out


def _variables(expr: str) -> set[str]:
    """The names of the variables ``expr`` refers to (``$name``)."""
    tokens = _tokens(expr)
    if tokens is None:
        raise Unsupported(f"cannot read {expr!r}")
    return {expr[a + 1:b] for kind, a, b in tokens if kind == "var"}


def _required(el: etree._Element, name: str) -> str:
    value = el.get(name)
    if not value:
        raise Unsupported(f"{el.tag} without @{name}")
    return str(value)


def _literal(value: str) -> str:
    """``value`` as a literal result attribute (an attribute value template)."""
    return value.replace("{", "{{").replace("}", "}}")


def _text(parent: etree._Element, text: str) -> None:
    if text:
        etree.SubElement(parent, f"{_X}text").text = text


def _index(parent: etree._Element, same: str) -> None:
    """``[n]`` after a step: the element's place among the siblings ``same`` selects,
    written when it has such a sibling before or after it."""
    etree.SubElement(parent, f"{_X}variable", name="n",
                     select=f"1 + count(preceding-sibling::*[{same}])")
    cond = etree.SubElement(parent, f"{_X}if",
                            test=f"$n > 1 or following-sibling::*[{same}]")
    _text(cond, "[")
    etree.SubElement(cond, f"{_X}value-of", select="$n")
    _text(cond, "]")


def _element_ends(context: str) -> set[str] | None:
    """The element names the last steps of ``context``'s alternatives name (``p:S_DTM/
    p:C_C507[p:D_2380]``: ``{"p:C_C507"}``), or ``None`` when an alternative may match
    something else (``*``, ``node()``, ``/``, an attribute, a function, an axis)."""
    names: set[str] = set()
    for alternative in _split(context, "|"):
        steps = _split(alternative.strip(), "/")
        last = steps[-1].split("[", 1)[0].strip()
        if last.startswith("child::"):
            last = last[len("child::"):]
        if not _is_qname(last):
            return None
        names.add(last)
    return names or None


def _split(expr: str, sep: str) -> list[str]:
    """``expr`` split at ``sep`` outside brackets, parentheses and string literals."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(expr):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(expr[start:i])
            start = i + 1
    parts.append(expr[start:])
    return parts



def _is_qname(name: str) -> bool:
    parts = name.split(":")
    return 1 <= len(parts) <= 2 and all(_is_ncname(p) for p in parts)


def _is_ncname(part: str) -> bool:
    return bool(part) and (part[0].isalpha() or part[0] == "_") and all(
        c.isalnum() or c in "_.-" for c in part)
