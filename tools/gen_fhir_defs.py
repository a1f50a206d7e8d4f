#!/usr/bin/env python3
"""Generate Bevan's FHIR R4 definition tables (C) from the official npm package
hl7.fhir.r4.examples@4.0.1.

    python3 tools/gen_fhir_defs.py --package node_modules/hl7.fhir.r4.examples --out src/fhir/gen
    python3 tools/gen_fhir_defs.py --package node_modules/hl7.fhir.r4.examples --out src/fhir/gen --check

The tables implement the data half of include/bevan/fhir_defs.h; the lookup functions live in
the hand-written src/fhir/gen/lookup.c.  Output is deterministic (no timestamps, stable order).
--check regenerates into a temporary directory and exits 1 if the committed files differ.

Python 3 standard library only.
"""

import argparse
import difflib
import json
import os
import shutil
import sys
import tempfile
import time

GENERATED_FILES = (
    "defs_internal.h",
    "defs_pools.c",
    "defs_types.c",
    "defs_elements.c",
    "defs_search.c",
    "defs_compartment.c",
)

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
SYSTEM_TYPES = {  # FHIRPath system types -> FHIR primitive, used when the fhir-type extension is absent
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}
KINDS = {"primitive-type": "FHIR_KIND_PRIMITIVE", "complex-type": "FHIR_KIND_COMPLEX",
         "resource": "FHIR_KIND_RESOURCE"}
SP_TYPES = {"number": "FHIR_SP_NUMBER", "date": "FHIR_SP_DATE", "string": "FHIR_SP_STRING",
            "token": "FHIR_SP_TOKEN", "reference": "FHIR_SP_REFERENCE",
            "composite": "FHIR_SP_COMPOSITE", "quantity": "FHIR_SP_QUANTITY",
            "uri": "FHIR_SP_URI", "special": "FHIR_SP_SPECIAL"}
BOUND_TYPES = ("code", "Coding", "CodeableConcept")
MAX_FILE_BYTES = 1024 * 1024


class GenError(Exception):
    pass


def load_json(path):
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def bundle_resources(path):
    return [e["resource"] for e in load_json(path).get("entry", []) if "resource" in e]


def skey(s):
    """Sort key matching C strcmp() on UTF-8 strings."""
    return s.encode("utf-8")


def c_str(s):
    """C string literal for s (UTF-8), safe against trigraphs and hex-escape run-on."""
    if s is None:
        return "NULL"
    out = ['"']
    prev = ""
    for b in s.encode("utf-8"):
        ch = chr(b)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "?" and prev == "?":
            out.append("\\?")
        elif 0x20 <= b < 0x7F:
            out.append(ch)
        else:
            out.append("\\%03o" % b)
        prev = ch
    out.append('"')
    return "".join(out)


def c_bool(v):
    return "true" if v else "false"


def strip_version(url):
    return url.split("|", 1)[0] if url else url


# --------------------------------------------------------------------------------------------
# Value set expansion (only what can be computed exactly from the package)
# --------------------------------------------------------------------------------------------

class Terminology:
    def __init__(self, bundles):
        self.valuesets = {}
        self.codesystems = {}
        for path in bundles:
            for r in bundle_resources(path):
                rt = r.get("resourceType")
                if rt == "ValueSet":
                    self.valuesets.setdefault(r["url"], r)
                elif rt == "CodeSystem":
                    self.codesystems.setdefault(r["url"], r)
        self._cache = {}

    @staticmethod
    def _all_concepts(concepts, out):
        """All codes of a concept tree, nested ones included, except abstract (notSelectable)
        grouping concepts, which are not valid codes (the official expansions leave them out)."""
        for c in concepts or ():
            abstract = any(p.get("code") in ("notSelectable", "abstract") and p.get("valueBoolean") is True
                           for p in c.get("property", ()))
            if not abstract:
                out.append(c["code"])
            Terminology._all_concepts(c.get("concept"), out)

    def _expand_part(self, part, stack):
        """Set of (system, code) for one compose.include/exclude, or a reason string."""
        if part.get("filter"):
            return "filter"
        sets = []
        system = part.get("system")
        if system:
            if part.get("concept"):
                # An explicit enumeration is exact, whatever the code system.
                sets.append({(system, c["code"]) for c in part["concept"]})
            else:
                cs = self.codesystems.get(system)
                if cs is None or cs.get("content") != "complete":
                    return "external or incomplete code system " + system
                codes = []
                self._all_concepts(cs.get("concept"), codes)
                sets.append({(system, c) for c in codes})
        for vs_url in part.get("valueSet", ()):
            sub = self.expand(strip_version(vs_url), stack)
            if isinstance(sub, str):
                return "imported value set: " + sub
            sets.append(sub)
        if not sets:
            return "empty include"
        result = sets[0]
        for s in sets[1:]:
            result = result & s
        return result

    def single_system(self, url, stack=()):
        """The one code system every code of value set url comes from, or None (several systems,
        no compose, an include without a system). Used for the implied system of `code` elements."""
        vs = self.valuesets.get(url)
        if vs is None or "compose" not in vs or url in stack:
            return None
        systems = set()
        for inc in vs["compose"].get("include", ()):
            if inc.get("system"):
                systems.add(inc["system"])
            for sub_url in inc.get("valueSet", ()):
                sub = self.single_system(strip_version(sub_url), stack + (url,))
                if sub is None:
                    return None
                systems.add(sub)
            if not inc.get("system") and not inc.get("valueSet"):
                return None
        return systems.pop() if len(systems) == 1 else None

    def expand(self, url, stack=()):
        """frozenset of (system, code), or a string saying why it can't be expanded."""
        if url in self._cache:
            return self._cache[url]
        if url in stack:
            return "import cycle at " + url
        vs = self.valuesets.get(url)
        if vs is None:
            res = "unknown value set " + url
        elif "compose" not in vs:
            res = "value set without compose " + url
        else:
            res = set()
            for inc in vs["compose"].get("include", ()):
                part = self._expand_part(inc, stack + (url,))
                if isinstance(part, str):
                    res = part
                    break
                res |= part
            if not isinstance(res, str):
                for exc in vs["compose"].get("exclude", ()):
                    part = self._expand_part(exc, stack + (url,))
                    if isinstance(part, str):
                        res = "exclude: " + part
                        break
                    res -= part
            if not isinstance(res, str):
                res = frozenset(res) if res else "empty expansion"
        self._cache[url] = res
        return res


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

class Pool:
    """A flat array of strings; equal lists are stored once and referenced by offset."""

    def __init__(self, name):
        self.name = name
        self.items = []
        self.index = {}

    def add(self, strings):
        key = tuple(strings)
        if not key:
            return None
        off = self.index.get(key)
        if off is None:
            off = len(self.items)
            self.items.extend(key)
            self.index[key] = off
        return off

    def ref(self, off):
        return "NULL" if off is None else "%s + %d" % (self.name, off)


class Gen:
    def __init__(self, pkg):
        self.pkg = pkg
        meta = load_json(os.path.join(pkg, "package.json"))
        self.pkg_id = "%s@%s" % (meta["name"], meta["version"])
        self.type_pool = Pool("fhir_gen_type_pool")
        self.code_pool = Pool("fhir_gen_code_pool")
        self.name_pool = Pool("fhir_gen_name_pool")  # targets, compartment params
        self.stats = {}

    # ---- structure definitions ----
    def load_types(self):
        sds = []
        for fn in ("Bundle-types.json", "Bundle-resources.json"):
            for r in bundle_resources(os.path.join(self.pkg, fn)):
                if r.get("resourceType") != "StructureDefinition":
                    continue
                if r.get("kind") not in KINDS or r.get("derivation") == "constraint":
                    continue
                sds.append(r)
        names = [sd["id"] for sd in sds]
        if len(set(names)) != len(names):
            raise GenError("duplicate StructureDefinition ids")
        for sd in sds:
            if sd["type"] != sd["id"]:
                raise GenError("unexpected type/id mismatch in %s" % sd["id"])
        sds.sort(key=lambda sd: skey(sd["id"]))
        self.sds = sds

    def element_types(self, sd, el):
        codes = []
        for t in el.get("type", ()):
            code = t["code"]
            if "/" in code:
                ft = [x.get("valueUrl") for x in t.get("extension", ()) if x.get("url") == FHIR_TYPE_EXT]
                code = ft[0] if ft else SYSTEM_TYPES.get(code)
                if code is None:
                    raise GenError("unmapped system type %s at %s" % (t["code"], el["path"]))
            if code not in codes:
                codes.append(code)
        # R4 declares Resource.id as System.String/"string"; the specification says type id.
        if sd["kind"] == "resource" and el["path"] == sd["id"] + ".id":
            codes = ["id"]
        return codes

    def build_elements(self, term):
        self.elements = []   # dicts, index == position in fhir_elements
        self.types = []
        bind_ok = bind_skip = 0
        skipped_vs = {}
        expanded_vs = set()
        for sd in self.sds:
            snap = sd["snapshot"]["element"]
            root = snap[0]["path"]
            if root != sd["id"]:
                raise GenError("snapshot of %s does not start at its root" % sd["id"])
            kids = {root: []}
            by_path = {}
            for el in snap[1:]:
                path = el["path"]
                if sd["kind"] == "primitive-type" and path == root + ".value":
                    continue  # primitives are leaves; the value's regex is recorded on the type
                parent = path.rsplit(".", 1)[0]
                if parent not in kids:
                    raise GenError("element %s has no parent in %s" % (path, sd["id"]))
                kids[parent].append(el)
                kids[path] = []
                by_path[path] = el

            regex = None
            if sd["kind"] == "primitive-type":
                for el in snap:
                    if el["path"] == root + ".value":
                        for t in el.get("type", ()):
                            for x in t.get("extension", ()):
                                if x.get("url") == REGEX_EXT:
                                    regex = x["valueString"]

            index_of = {}
            pending_refs = []

            def alloc(parent_path):
                children = kids[parent_path]
                first = len(self.elements)
                for el in children:
                    index_of[el["path"]] = len(self.elements)
                    self.elements.append(None)
                for el in children:
                    rec = self.make_element(sd, el, term)
                    if rec["binding_valueset"] is not None:
                        if rec["codes_off"] is None:
                            skipped_vs[rec["binding_valueset"]] = rec["skip_reason"]
                        else:
                            expanded_vs.add(rec["binding_valueset"])
                    self.elements[index_of[el["path"]]] = rec
                    if el.get("contentReference"):
                        pending_refs.append((rec, el))
                    if kids[el["path"]]:
                        if el.get("contentReference"):
                            raise GenError("%s has both children and contentReference" % el["path"])
                        rec["first_child"], rec["n_children"] = alloc(el["path"])
                return (first, len(children)) if children else (-1, 0)

            first, n = alloc(root)
            for rec, el in pending_refs:
                ref = el["contentReference"]
                if not ref.startswith("#") or ref[1:] not in index_of:
                    raise GenError("unresolvable contentReference %s at %s" % (ref, el["path"]))
                tgt = index_of[ref[1:]]
                rec["content_ref"] = tgt
                # A contentReference element has no type of its own: it is the target's structure.
                rec["types_off"] = self.elements[tgt]["types_off"]
                rec["n_types"] = self.elements[tgt]["n_types"]

            base = sd.get("baseDefinition")
            self.types.append({
                "name": sd["id"],
                "kind": KINDS[sd["kind"]],
                "abstract": bool(sd.get("abstract")),
                "base": base.rsplit("/", 1)[1] if base else None,
                "first": first if n else -1,
                "n": n,
                "regex": regex,
            })

        for rec in self.elements:
            if rec["binding_valueset"] is not None:
                if rec["codes_off"] is None:
                    bind_skip += 1
                else:
                    bind_ok += 1
        self.stats["bindings_expanded"] = bind_ok
        self.stats["bindings_skipped"] = bind_skip
        self.stats["valuesets_expanded"] = len(expanded_vs)
        self.stats["valuesets_skipped"] = skipped_vs

    def make_element(self, sd, el, term):
        path = el["path"]
        name = path.rsplit(".", 1)[1]
        choice = name.endswith("[x]")
        if choice:
            name = name[:-3]
        types = self.element_types(sd, el)
        mx = el.get("max", "*")
        rec = {
            "name": name,
            "path": path,
            "min": int(el.get("min", 0)),
            "max": "FHIR_MAX_UNBOUNDED" if mx == "*" else str(int(mx)),
            "choice": choice,
            "n_types": len(types),
            "types_off": self.type_pool.add(types),
            "first_child": -1,
            "n_children": 0,
            "content_ref": -1,
            "codes_off": None,
            "n_codes": 0,
            "binding_valueset": None,
            "skip_reason": None,
            "is_modifier": bool(el.get("isModifier")),
            "is_summary": bool(el.get("isSummary")),
        }
        if rec["min"] > 0xFFFF or (mx != "*" and int(mx) >= 0xFFFF):
            raise GenError("cardinality out of range at " + path)
        if len(types) > 255:
            raise GenError("too many types at " + path)
        b = el.get("binding")
        if b and b.get("strength") == "required" and b.get("valueSet") and \
                any(t in BOUND_TYPES for t in types):
            url = strip_version(b["valueSet"])
            rec["binding_valueset"] = url
            exp = term.expand(url)
            if isinstance(exp, str):
                rec["skip_reason"] = exp
            else:
                codes = sorted({c for _, c in exp}, key=skey)
                if len(codes) > 0xFFFF:
                    rec["skip_reason"] = "too many codes"
                else:
                    rec["codes_off"] = self.code_pool.add(codes)
                    rec["n_codes"] = len(codes)
        return rec

    # ---- search parameters ----
    def build_search(self):
        sps = [r for r in bundle_resources(os.path.join(self.pkg, "Bundle-searchParams.json"))
               if r.get("resourceType") == "SearchParameter"]
        self.stats["sp_definitions"] = len(sps)
        rows = []
        seen = set()
        for sp in sps:
            if sp["type"] not in SP_TYPES:
                raise GenError("unknown search parameter type %s" % sp["type"])
            for base in sp["base"]:
                key = (base, sp["code"])
                if key in seen:
                    raise GenError("duplicate search parameter %s/%s" % key)
                seen.add(key)
                targets = list(sp.get("target", ()))
                mods = list(sp.get("modifier", ()))
                if len(targets) > 255 or len(mods) > 255 or len(sp.get("component", ())) > 255:
                    raise GenError("search parameter %s too wide" % sp["url"])
                rows.append({
                    "resource": base,
                    "code": sp["code"],
                    "type": SP_TYPES[sp["type"]],
                    "url": sp["url"],
                    "expression": sp.get("expression"),
                    "xpath_usage": sp.get("xpathUsage"),
                    "targets": targets,
                    "components": [(c["definition"], c["expression"]) for c in sp.get("component", ())],
                    "modifiers": mods,
                })
        rows.sort(key=lambda r: (skey(r["resource"]), skey(r["code"])))
        self.search = rows

    # ---- compartment ----
    def build_compartment(self):
        cd = load_json(os.path.join(self.pkg, "CompartmentDefinition-patient.json"))
        if cd.get("code") != "Patient":
            raise GenError("CompartmentDefinition-patient.json is not the Patient compartment")
        rows = [(r["code"], list(r["param"])) for r in cd.get("resource", ()) if r.get("param")]
        rows.sort(key=lambda r: skey(r[0]))
        self.compartment = rows

    # ---- emit ----
    def header(self, what):
        return ("/* generated by tools/gen_fhir_defs.py from %s \u2014 do not edit.\n"
                " * %s\n"
                " * Regenerate: python3 tools/gen_fhir_defs.py --package node_modules/hl7.fhir.r4.examples --out src/fhir/gen */\n"
                % (self.pkg_id, what))

    def emit(self):
        files = {}
        resources = sorted((t["name"] for t in self.types
                            if t["kind"] == "FHIR_KIND_RESOURCE" and not t["abstract"]), key=skey)
        self.stats["resources"] = len(resources)

        # defs_types.c
        out = [self.header("Types (fhir_types, sorted by name) and concrete resource names."),
               '#include "bevan/fhir_defs.h"\n\n',
               "const fhir_type fhir_types[] = {\n"]
        for t in self.types:
            out.append("    {%s, %s, %s, %s, %d, %d, %s},\n" % (
                c_str(t["name"]), t["kind"], c_bool(t["abstract"]), c_str(t["base"]),
                t["first"], t["n"], c_str(t["regex"])))
        out.append("};\nconst size_t fhir_types_count = sizeof fhir_types / sizeof fhir_types[0];\n\n")
        out.append("const char *const fhir_resource_names[] = {\n")
        for n in resources:
            out.append("    %s,\n" % c_str(n))
        out.append("};\nconst size_t fhir_resource_names_count = "
                   "sizeof fhir_resource_names / sizeof fhir_resource_names[0];\n")
        files["defs_types.c"] = "".join(out)

        # defs_elements.c (compact positional rows: it is the biggest table)
        starts = {t["first"]: t["name"] for t in self.types if t["n"]}
        out = [self.header("Elements of all types (fhir_elements); see include/bevan/fhir_defs.h."),
               '#include "bevan/fhir_defs.h"\n#include "defs_internal.h"\n\n',
               "#define U FHIR_MAX_UNBOUNDED\n"
               "#define T(o) (fhir_gen_type_pool + (o))\n"
               "#define C(o) (fhir_gen_code_pool + (o))\n\n"
               "/* name, path, min, max, choice, n_types, types, first_child, n_children, content_ref,\n"
               " * required_codes, n_required_codes, binding_valueset, is_modifier, is_summary */\n",
               "const fhir_element fhir_elements[] = {\n"]
        for i, e in enumerate(self.elements):
            if i in starts:
                out.append("    /* %d: %s */\n" % (i, starts[i]))
            out.append("    {%s, %s, %d, %s, %d, %d, %s, %d, %d, %d, %s, %d, %s, %d, %d},\n" % (
                c_str(e["name"]), c_str(e["path"]), e["min"],
                "U" if e["max"] == "FHIR_MAX_UNBOUNDED" else e["max"], e["choice"],
                e["n_types"], "NULL" if e["types_off"] is None else "T(%d)" % e["types_off"],
                e["first_child"], e["n_children"], e["content_ref"],
                "NULL" if e["codes_off"] is None else "C(%d)" % e["codes_off"], e["n_codes"],
                c_str(e["binding_valueset"]), e["is_modifier"], e["is_summary"]))
        out.append("};\nconst size_t fhir_elements_count = sizeof fhir_elements / sizeof fhir_elements[0];\n")
        files["defs_elements.c"] = "".join(out)

        # defs_search.c
        comps = []
        comp_off = {}
        for r in self.search:
            r["targets_off"] = self.name_pool.add(r["targets"])
            r["mods_off"] = self.name_pool.add(r["modifiers"])
            if r["components"]:
                key = tuple(r["components"])
                if key not in comp_off:
                    comp_off[key] = len(comps)
                    comps.extend(key)
                r["comp_off"] = comp_off[key]
        # Long expressions are shared by many bases: store each distinct one once.
        exprs = {}
        for r in self.search:
            ex = r["expression"]
            if ex is not None and len(ex) > 64 and ex not in exprs:
                exprs[ex] = "sp_expr_%d" % len(exprs)
        out = [self.header("Search parameters (fhir_search_params, sorted by resource, code)."),
               '#include "bevan/fhir_defs.h"\n#include "defs_internal.h"\n\n']
        for ex, name in exprs.items():
            out.append("static const char %s[] = %s;\n" % (name, c_str(ex)))
        out.append("\nstatic const fhir_sp_component sp_components[] = {\n")
        for d, ex in comps:
            out.append("    {%s, %s},\n" % (c_str(d), c_str(ex)))
        if not comps:
            out.append("    {NULL, NULL},\n")
        out.append("};\n\n")
        out.append("/* resource, code, type, url, expression, xpath_usage, n_targets, targets,\n"
                   " * n_components, components, modifiers, n_modifiers */\n")
        out.append("const fhir_search_param fhir_search_params[] = {\n")
        for r in self.search:
            ex = r["expression"]
            exs = exprs.get(ex) or c_str(ex)
            out.append("    {%s, %s, %s, %s, %s, %s, %d, %s, %d, %s, %s, %d},\n" % (
                c_str(r["resource"]), c_str(r["code"]), r["type"], c_str(r["url"]), exs,
                c_str(r["xpath_usage"]), len(r["targets"]), self.name_pool.ref(r["targets_off"]),
                len(r["components"]),
                "sp_components + %d" % r["comp_off"] if r["components"] else "NULL",
                self.name_pool.ref(r["mods_off"]), len(r["modifiers"])))
        out.append("};\nconst size_t fhir_search_params_count = "
                   "sizeof fhir_search_params / sizeof fhir_search_params[0];\n")
        out.append("\n/* Required bindings of `code` elements whose value set draws on one code system: that\n"
                   " * system is the code's implied system (token search system|code). Sorted by value set. */\n")
        out.append("const fhir_binding_system fhir_binding_systems[] = {\n")
        for vs, system in self.binding_systems:
            out.append("    {%s, %s},\n" % (c_str(vs), c_str(system)))
        out.append("};\nconst size_t fhir_binding_systems_count = "
                   "sizeof fhir_binding_systems / sizeof fhir_binding_systems[0];\n")
        files["defs_search.c"] = "".join(out)

        # defs_compartment.c
        out = [self.header("Patient compartment (CompartmentDefinition-patient.json), sorted by resource."),
               '#include "bevan/fhir_defs.h"\n#include "defs_internal.h"\n\n',
               "const fhir_compartment_entry fhir_patient_compartment[] = {\n"]
        for res, params in self.compartment:
            if len(params) > 255:
                raise GenError("too many compartment params for " + res)
            out.append("    {%s, %d, %s},\n" % (c_str(res), len(params),
                                                 self.name_pool.ref(self.name_pool.add(params))))
        out.append("};\nconst size_t fhir_patient_compartment_count = "
                   "sizeof fhir_patient_compartment / sizeof fhir_patient_compartment[0];\n")
        files["defs_compartment.c"] = "".join(out)

        # defs_pools.c + defs_internal.h (pools are emitted last: the other files fill them)
        pools = (self.type_pool, self.code_pool, self.name_pool)
        out = [self.header("Shared string pools referenced by offset from the other tables."),
               '#include "bevan/fhir_defs.h"\n#include "defs_internal.h"\n']
        for p in pools:
            out.append("\nconst char *const %s[] = {\n" % p.name)
            line = "   "
            for s in p.items:
                lit = " " + c_str(s) + ","
                if len(line) + len(lit) > 100:
                    out.append(line + "\n")
                    line = "   "
                line += lit
            if not p.items:
                line += " NULL,"
            out.append(line + "\n};\n")
        files["defs_pools.c"] = "".join(out)

        out = [self.header("Internal declarations shared by the generated tables (not a public API)."),
               "#ifndef BEVAN_FHIR_GEN_DEFS_INTERNAL_H\n#define BEVAN_FHIR_GEN_DEFS_INTERNAL_H\n\n"]
        for p in pools:
            out.append("extern const char *const %s[%d];\n" % (p.name, max(len(p.items), 1)))
        out.append("\n#endif\n")
        files["defs_internal.h"] = "".join(out)

        self.stats["type_pool"] = len(self.type_pool.items)
        self.stats["code_pool"] = len(self.code_pool.items)
        self.stats["name_pool"] = len(self.name_pool.items)
        assert set(files) == set(GENERATED_FILES)
        for fn, text in files.items():
            if len(text.encode("utf-8")) > MAX_FILE_BYTES:
                raise GenError("%s would be %d bytes (> %d); split it" % (fn, len(text), MAX_FILE_BYTES))
        return files


def cross_check_expansions(pkg, term, urls):
    """Compare our expansions with the official ones in Bundle-valueset-expansions.json.
    Returns (matching, list of mismatching URLs); value sets it lacks are not counted."""
    path = os.path.join(pkg, "Bundle-valueset-expansions.json")
    if not os.path.exists(path):
        return 0, []
    official = {}
    for r in bundle_resources(path):
        if r.get("resourceType") != "ValueSet" or "expansion" not in r or r["url"] not in urls:
            continue
        codes = set()
        stack = list(r["expansion"].get("contains", ()))
        while stack:
            c = stack.pop()
            if "code" in c:
                codes.add((c.get("system"), c["code"]))
            stack.extend(c.get("contains", ()))
        official[r["url"]] = codes
    ok, bad = 0, []
    for url in sorted(urls):
        mine = term.expand(url)
        if isinstance(mine, str) or url not in official:
            continue
        if set(mine) == official[url]:
            ok += 1
        else:
            bad.append(url)
    return ok, bad


def generate(pkg):
    g = Gen(pkg)
    term = Terminology([os.path.join(pkg, f) for f in
                        ("Bundle-valuesets.json", "Bundle-v3-valuesets.json", "Bundle-v2-valuesets.json")])
    g.load_types()
    g.build_elements(term)
    urls = {e["binding_valueset"] for e in g.elements if e["binding_valueset"]}
    g.stats["crosscheck_ok"], g.stats["crosscheck_bad"] = cross_check_expansions(pkg, term, urls)
    g.build_search()
    code_bindings = {e["binding_valueset"] for e in g.elements
                     if e["binding_valueset"] and e["n_types"] == 1 and g.type_pool.items[e["types_off"]] == "code"}
    g.binding_systems = sorted(((vs, term.single_system(vs)) for vs in code_bindings
                                if term.single_system(vs)), key=lambda p: skey(p[0]))
    g.build_compartment()
    files = g.emit()
    return g, files


def write_files(outdir, files):
    os.makedirs(outdir, exist_ok=True)
    for fn in sorted(files):
        with open(os.path.join(outdir, fn), "w", encoding="utf-8", newline="\n") as f:
            f.write(files[fn])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--package", required=True, help="path to the hl7.fhir.r4.examples npm package")
    ap.add_argument("--out", required=True, help="output directory (src/fhir/gen)")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and fail if --out differs")
    ap.add_argument("--verbose", action="store_true", help="list the value sets that were not expanded")
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    try:
        g, files = generate(args.package)
    except (GenError, OSError, KeyError, ValueError) as e:
        print("gen_fhir_defs: error: %s" % e, file=sys.stderr)
        return 2

    if args.check:
        tmp = tempfile.mkdtemp(prefix="bevan-gen-")
        try:
            write_files(tmp, files)
            stale = []
            for fn in sorted(files):
                new_path = os.path.join(tmp, fn)
                old_path = os.path.join(args.out, fn)
                with open(new_path, encoding="utf-8") as f:
                    new = f.read()
                try:
                    with open(old_path, encoding="utf-8") as f:
                        old = f.read()
                except FileNotFoundError:
                    old = None
                if old != new:
                    stale.append(fn)
                    if old is not None:
                        diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(),
                                                         old_path, "regenerated", lineterm="", n=1))
                        sys.stderr.write("\n".join(diff[:20]) + "\n")
            # Generated files that the generator no longer produces (renamed or dropped tables).
            if os.path.isdir(args.out):
                for fn in sorted(os.listdir(args.out)):
                    if fn.startswith("defs_") and fn not in files:
                        stale.append(fn + " (no longer generated: delete it)")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if stale:
            print("gen_fhir_defs: %s out of date: %s\n  run: python3 tools/gen_fhir_defs.py "
                  "--package %s --out %s" % (args.out, ", ".join(stale), args.package, args.out),
                  file=sys.stderr)
            return 1
        print("gen_fhir_defs: %s is up to date (%.1fs)" % (args.out, time.monotonic() - t0))
        return 0

    write_files(args.out, files)
    s = g.stats
    print("gen_fhir_defs: %s -> %s in %.1fs" % (g.pkg_id, args.out, time.monotonic() - t0))
    print("  types: %d (%d concrete resources), elements: %d" % (len(g.types), s["resources"], len(g.elements)))
    print("  search parameters: %d definitions -> %d (resource, code) entries"
          % (s["sp_definitions"], len(g.search)))
    print("  patient compartment: %d resource types" % len(g.compartment))
    print("  required bindings: %d expanded, %d skipped (value sets: %d expanded, %d skipped)"
          % (s["bindings_expanded"], s["bindings_skipped"], s["valuesets_expanded"], len(s["valuesets_skipped"])))
    print("  pools: %d type codes, %d binding codes, %d names"
          % (s["type_pool"], s["code_pool"], s["name_pool"]))
    print("  expansions cross-checked against Bundle-valueset-expansions.json: %d match, %d differ"
          % (s["crosscheck_ok"], len(s["crosscheck_bad"])))
    for url in s["crosscheck_bad"]:
        print("gen_fhir_defs: warning: expansion of %s differs from the official one" % url, file=sys.stderr)
    if args.verbose:
        for url, why in sorted(s["valuesets_skipped"].items()):
            print("  skipped %s: %s" % (url, why))
    return 0


if __name__ == "__main__":
    sys.exit(main())
