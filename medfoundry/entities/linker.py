"""Dictionary entity linker: one Aho-Corasick automaton (ahocorasick-rs) over the tree's normalized surface forms.

How a text is matched (all offsets refer to the original text):
- `fold` lower-cases it and turns every non-alphanumeric character (punctuation, hyphens, whitespace) into a space,
  one character for one, so offsets need no mapping; documents of a batch are joined with a NUL that no form holds;
- each surface form is stored as " form " (its folded spelling, and the whitespace-collapsed one) and the text is
  padded with a space at each end: every match starts and ends on a word boundary, in one Rust pass over the
  UTF-8 bytes (overlapping matches; byte offsets are mapped back to characters with numpy);
- the longest match wins where matches nest or overlap (leftmost first), chosen with numpy, not per match in Python.

Guards against short ambiguous forms (`LinkerOptions`): forms shorter than `min_length` are dropped; forms that are
acronyms in their source ("ALL", "DIL") and short lower-case drug synonyms ("gaba") match only when written in
upper case and not inside an upper-case heading; two-letter acronyms, single-word HPO modifiers ("distal"), generic
heads ("syndrome") and forms that are common English words ("as", "cold", "all", "lead") are dropped.
Negation cues (see `negation.py`) and ConText experiencer/temporality cues (see `context.py`) live in the same
automaton, so they cost no second pass: every mention carries `negated`, `experiencer` ("patient" / "family") and
`temporality` ("current" / "historical"). Context-dependent abbreviations ("MI", "DM", "HF", "AF", "RA") link where
the document defines them or the sentence is clinical (see `abbreviations.py`); they carry `abbreviation`.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np

from medfoundry.entities import context, negation
from medfoundry.entities.abbreviations import AbbreviationResolver
from medfoundry.entities.normalize import DOCUMENT_SEPARATOR, code_points, fold, is_acronym, normalize_form
from medfoundry.entities.tree import EntityTree

LINKER_VERSION = "6"  # bump when matching or form selection changes: invalidates cached linkers
_ENTITY, _PRE, _POST, _PSEUDO, _TERMINATOR = 0, 1, 2, 3, 4
_FAMILY_PRE, _FAMILY_POST, _HISTORICAL_PRE, _HISTORICAL_POST = 5, 6, 7, 8
_HEREDITARY = 9  # "familial", "hereditary", "inherited" before a disease name (see `_qualified_diseases`)
HEREDITARY_WORDS = ("familial", "hereditary", "inherited")
# HPO inheritance modes as bits; a disease whose only mode is the one written before its name is the same disease
INHERITANCE_BITS = {
    "HP:0000006": 1,  # autosomal dominant
    "HP:0000007": 2,  # autosomal recessive
    "HP:0001417": 4,  # X-linked
    "HP:0001419": 4,  # X-linked recessive
    "HP:0001423": 4,  # X-linked dominant
    "HP:0001427": 8,  # mitochondrial
    "HP:0001450": 16,  # Y-linked
    # not Mendelian: a disease that also occurs sporadically or somatically has a "familial" form that is a subset
    "HP:0003745": 32,  # sporadic
    "HP:0001442": 32,  # somatic mosaicism
    "HP:0001428": 32,  # somatic mutation
    "HP:0001426": 32,  # multifactorial
}
# "GENE-related disease" / "GENE-associated disease" (GeneReviews' and MedlinePlus' naming of gene-specific forms)
_GENE_QUALIFIER = re.compile(r"([A-Za-z][A-Za-z0-9]{1,11})-(?:related|associated) $")
_ABBREVIATION_HOW = ("", "defined", "context")
_SEPARATOR = f" {DOCUMENT_SEPARATOR} "
_BRACKETED = re.compile(r"\s*[\[(][^\])]*[\])]")
_UNSPECIFIED = re.compile(r",?\s+(unspecified|not elsewhere classified|nos)$", re.IGNORECASE)
_POSSESSIVE = re.compile(r"['’]s?(?=\s)")
# "Farber disease" is also written "Farber's disease" (and the other way round, handled by _POSSESSIVE).
_EPONYM_HEAD = re.compile(
    r"\b([A-Z][a-z]+(?<!al)(?<!ic)(?<!ous)(?<!ary)(?<!ive)(?<!ar)(?<!oid)(?<!ed)(?<!ac))"
    r"(?= (?:disease|syndrome|palsy|sign|anomaly|phenomenon|encephalitis)\b)"
)
# OMIM/Orphanet write qualifiers after a comma: "Pulmonary disease, chronic obstructive", "Spastic paraplegia 8,
# autosomal recessive", "Czech dysplasia, metatarsal type"; running text puts them first or leaves them out.
_SUBTYPE_QUALIFIER = re.compile(
    r"^(?:\w+ type|type \w+|autosomal (?:dominant|recessive)|x-linked(?: recessive| dominant)?|"
    r"(?:early|late|adult|juvenile|infantile|childhood)[- ]onset|familial|congenital|isolated|nonsyndromic)$",
    re.IGNORECASE,
)
# "Menkes disease" is also "Menkes syndrome": an eponym names one disorder whichever head noun follows it.
_EPONYM_SWAP = re.compile(r"^((?:[A-Z][a-z'’]+[- ])*[A-Z][a-z'’]+) (disease|syndrome)$")
# "15q13.3 microdeletion syndrome" is written "15q13.3 microdeletion"; "Type III glycogen storage disease" is written
# "glycogen storage disease type III".
_ADJECTIVE_ENDINGS = ("al", "ic", "ous", "ary", "ive", "ar", "oid", "ed", "ac", "tory")
_CHROMOSOMAL_SYNDROME = re.compile(
    r"^((?=.*\d)(?=.*\b(?:deletion|duplication|microdeletion|microduplication|trisomy|tetrasomy|monosomy)\b).*) syndrome$",
    re.I,
)
# A disease named without a head noun is also written with "syndrome" after it ("GLUT1 deficiency syndrome",
# "Lenz microphthalmia syndrome", "PPM-X syndrome", "dilated cardiomyopathy with ataxia syndrome"): names of
# hyphen-joined parts, "... with ...", "... deficiency" and an eponym before one word.
_HEAD_NOUNS = ("syndrome", "disease", "disorder", "syndromes", "diseases", "disorders", "complex", "sequence")
_SYNDROME_LESS = re.compile(
    r"[A-Za-z0-9]-[A-Za-z]| with | deficiency$|^[A-Z][a-z]+(?<!al)(?<!ic)(?<!ous)(?<!ary)(?<!ive)(?<!ar)(?<!ed) [a-z]+$"
)
# "ALG1-CDG" is "ALG1-congenital disorder of glycosylation" (the CDG nomenclature of Jaeken et al. 2009).
_CDG = re.compile(r"(?<=[-\s])CDG$")
# A qualifier that OMIM writes after the comma but prose writes after the name ("Ichthyosis, hystrix-like, with
# deafness" -> "hystrix-like Ichthyosis with deafness").
_TRAILING_QUALIFIER = re.compile(r"^(?:with|without|due to|associated with|type \w+)\b", re.IGNORECASE)
_LEADING_TYPE = re.compile(r"^type (\w+) (.+)$", re.IGNORECASE)
_TRAILING_NUMBER = re.compile(r"^(.*[a-z]) (\d+[a-z]?|[ivx]+[a-z]?)$", re.IGNORECASE)
_ROMAN = ("i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x")
_TYPE_NUMBER = re.compile(r"\b(type|group|class) (\d+|[ivx]+)\b", re.IGNORECASE)
_PLURAL_KINDS = frozenset({"disease", "phenotype", "symptom", "injury", "anatomy"})
_PLURAL_RULES = (
    (re.compile(r"sis$"), "ses"),
    (re.compile(r"([^aeiou])y$"), r"\1ies"),
    (re.compile(r"(x|z|ch|sh)$"), r"\1es"),
)

# Common English words that are also synonyms of some node but in running text mostly are not mentions of it.
AMBIGUOUS_WORDS = frozenset(
    """
    a about above act acts after again against age aged aid aids air all also am an and any are art as at
    back bad bag band bar base be bean beet being best better between big bit black blue boil born both box
    boy bring brown but by call called can care case cast cat change child clear close
    cold come common control corn could cover cross cut dark date day dead deep did do does doing done down
    draw dry dull each early earth easy eat egg either end energy even ever every fact fair fall far fast
    feel fell few field file fill find fine fire first fit five flat flow fly focus food for form four free
    from front full gain gas get give glass go gold good great green ground group grow had half hard
    has have he hear heat heavy held help her here high him his hit hold home hope hops hot how ice if
    in is it its just keep kind kit know land large last late lead leaf left less let level lie life light like
    line lines little live long look lose lot love low made main major make male man many mark matter may
    me mean men might mind mine minor miss more most mother move much must my name near need net never new next
    nice night no none nor normal not note now number of off oil old on once one only open or other our out over own
    page pan part pass past patch pay peak per pick pill place plain plan plant play point pole poor post pot
    power press pure put race rain range rate raw reach read ready real red rest rich ride right ring rise road rock
    role room root rose round rule run safe said salt same sand save saw say sea see seed seen self send set shape
    she shell short should show side sign simple since single sink six size slow small smile snow so soft
    soil some son sound spring stand star start state stay step still stone stop store strain strong such sugar sun
    support sure table tail take talk tall tea tear test than that the their them then there these they thing this
    those three through tie time tip to today too top total touch tree trial true try turn two type under unit up
    upon us use used very wall want war warm was watch water wave way we wear well went were wet what when where
    which while white who whole why wide will wind wine with wood word work world would year yellow yes yet you young
    your
    """.split()
)
# Generic heads that name a category, not an entity, when they stand alone.
GENERIC_FORMS = frozenset(
    "disease diseases disorder disorders syndrome syndromes symptom symptoms sign signs finding findings condition "
    "conditions abnormality abnormalities anomaly anomalies drug drugs medicine medicines injury injuries".split()
)


@dataclass(frozen=True)
class LinkerOptions:
    min_length: int = 3  # shortest normalized form kept (characters)
    short_drug_synonym: int = 4  # lower-case drug synonyms up to this length are treated as acronyms
    scope_words: int = 5  # NegEx window, in words, between a trigger and the mention
    negation: bool = True
    context: bool = True  # experiencer (family) and temporality (historical) cues
    context_scope_words: int = 8
    abbreviations: bool = True


@dataclass
class Matches:
    """Mentions found in a batch, as parallel arrays (the fast path); `mentions()` turns them into EntityMentions."""

    doc: np.ndarray
    start: np.ndarray
    end: np.ndarray
    node: np.ndarray  # row in the tree frame
    negated: np.ndarray
    n_docs: int
    linker: Linker = field(repr=False)
    family: np.ndarray | None = None
    historical: np.ndarray | None = None
    abbreviation: np.ndarray | None = None  # 0: none, 1: defined in the document, 2: listed, context supports it

    def __len__(self) -> int:
        return len(self.doc)

    def mentions(self) -> list[list]:
        from medfoundry.data.records import EntityMention

        out: list[list] = [[] for _ in range(self.n_docs)]
        ids, names, kinds, rare = self.linker.ids, self.linker.names, self.linker.kinds, self.linker.rare
        none = np.zeros(len(self.doc), dtype=np.int64)
        family = (self.family if self.family is not None else none).tolist()
        historical = (self.historical if self.historical is not None else none).tolist()
        abbreviation = (self.abbreviation if self.abbreviation is not None else none).tolist()
        for i, (doc, start, end, node, negated) in enumerate(
            zip(
                self.doc.tolist(),
                self.start.tolist(),
                self.end.tolist(),
                self.node.tolist(),
                self.negated.tolist(),
                strict=True,
            )
        ):
            extra = {"abbreviation": _ABBREVIATION_HOW[abbreviation[i]]} if abbreviation[i] else {}
            out[doc].append(
                EntityMention(
                    id=ids[node],
                    name=names[node],
                    kind=kinds[node],
                    start=start,
                    end=end,
                    rare=rare[node],
                    negated=negated,
                    experiencer="family" if family[i] else "patient",
                    temporality="historical" if historical[i] else "current",
                    **extra,
                )
            )
        return out


@dataclass
class _Form:
    key: str
    node: int
    rank: tuple
    acronym: bool
    spellings: set[str] = field(default_factory=set)  # folded spellings with other spacing ("atrophy  lower")


class Linker:
    """Build with `Linker.from_tree(tree)`; `link(text)` for one text, `find(texts)` / `link_batch(texts)` for many."""

    def __init__(
        self,
        patterns: list[str],
        pattern_rows: np.ndarray,
        values: np.ndarray,
        tree: EntityTree,
        options: LinkerOptions,
        stats: dict,
        form_nodes: dict[str, int],
    ) -> None:
        import ahocorasick_rs

        self.patterns = patterns  # distinct " form " patterns; pattern_rows[i] is pattern i's row of `values`
        self.pattern_rows = pattern_rows
        self.automaton = ahocorasick_rs.BytesAhoCorasick(
            [p.encode("utf-8") for p in patterns], matchkind=ahocorasick_rs.MatchKind.Standard
        )
        self.form_nodes = form_nodes  # normalized surface form -> node row
        # values[i] = (code, node row, pattern length in the padded text, acronym flag)
        self.values = values
        self.options = options
        self.stats = stats
        frame = tree.frame
        self.ids: list[str] = frame["id"].tolist()
        self.names: list[str] = frame["name"].tolist()
        self.kinds: list[str] = frame["kind"].tolist()
        self.rare: list[bool] = frame["rare"].astype(bool).tolist()
        self._tree = tree
        self._qualifiers: _QualifierIndex | None = None  # built at the first qualified name, from the tree
        self.abbreviations = (
            AbbreviationResolver(lambda form: self.form_nodes.get(normalize_form(form)))
            if options.abbreviations
            else None
        )

    # -- building -------------------------------------------------------------------------------------------------
    @classmethod
    def from_tree(cls, tree: EntityTree, options: LinkerOptions | None = None) -> Linker:
        options = options or LinkerOptions()
        forms, stats = _collect_forms(tree, options)
        row_of: dict[str, int] = {}  # pattern -> its row of `values`; a pattern added again takes the later row
        values: list[tuple[int, int, int, int]] = []

        def add(spelling: str, code: int, node: int, acronym: bool) -> None:
            pattern = f" {spelling} "
            row_of[pattern] = len(values)
            values.append((code, node, len(pattern), int(acronym)))

        for form in forms.values():
            for spelling in (form.key, *form.spellings):
                add(spelling, _ENTITY, form.node, form.acronym)
        cue_groups = (
            (_PRE, negation.PRE_TRIGGERS),
            (_POST, negation.POST_TRIGGERS),
            (_PSEUDO, negation.PSEUDO_TRIGGERS),
            (_TERMINATOR, negation.TERMINATORS),
        )
        if options.context:
            cue_groups += (
                (_FAMILY_PRE, context.FAMILY_PRE),
                (_FAMILY_POST, context.FAMILY_POST),
                (_HISTORICAL_PRE, context.HISTORICAL_PRE),
                (_HISTORICAL_POST, context.HISTORICAL_POST),
                (_PSEUDO, context.CONTEXT_PSEUDO),
            )
        if not (options.negation or options.context):
            cue_groups = ()
        for code, phrases in (*cue_groups, (_HEREDITARY, HEREDITARY_WORDS)):
            for phrase in phrases:
                key = normalize_form(phrase)
                if key not in forms:  # an entity form of the same spelling wins
                    add(key, code, -1, False)
        stats["patterns"] = len(row_of)
        form_nodes = {key: form.node for key, form in forms.items()}
        return cls(
            list(row_of),
            np.fromiter(row_of.values(), dtype=np.int64, count=len(row_of)),
            np.asarray(values, dtype=np.int64).reshape(-1, 4),
            tree,
            options,
            stats,
            form_nodes,
        )

    @classmethod
    def cached(cls, tree: EntityTree, folder: Path, options: LinkerOptions | None = None) -> Linker:
        """`from_tree`, kept as a pickle in `folder` (e.g. the tree's cache folder) keyed by the tree's content hash,
        the options and the linker version: loading (the automaton is recompiled from the stored patterns) takes
        ~1-2 s where building the full tree's takes ~5-8 s."""
        import hashlib
        import pickle

        options = options or LinkerOptions()
        tree_hash = tree.meta.get("tree_sha256") or hashlib.sha256(tree.frame.to_json().encode()).hexdigest()
        key = hashlib.sha256(f"{LINKER_VERSION}|{tree_hash}|{options}".encode()).hexdigest()[:16]
        path = Path(folder) / f"linker-{key}.pkl"
        if path.exists():
            with path.open("rb") as fh:
                state = pickle.load(fh)  # noqa: S301 - written by this method into our own cache folder
            return cls(
                state["patterns"],
                state["pattern_rows"],
                state["values"],
                tree,
                options,
                state["stats"],
                state["form_nodes"],
            )
        linker = cls.from_tree(tree, options)
        state = {k: getattr(linker, k) for k in ("patterns", "pattern_rows", "values", "stats", "form_nodes")}
        staging = path.with_name(path.name + f".tmp{os.getpid()}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with staging.open("wb") as fh:
            pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
        staging.replace(path)
        return linker

    def lookup(self, surface_form: str) -> str | None:
        """The node id a whole surface form links to (None when it is not in the dictionary)."""
        row = self.form_nodes.get(normalize_form(surface_form))
        return None if row is None else self.ids[row]

    # -- matching -------------------------------------------------------------------------------------------------
    def link(self, text: str) -> list:
        """EntityMentions in one text."""
        return self.find([text]).mentions()[0]

    def link_batch(self, texts: Sequence[str], batch_chars: int = 4_000_000) -> list[list]:
        """EntityMentions for each text; texts are matched in batches of about `batch_chars` characters."""
        out: list[list] = []
        for batch in batches(texts, batch_chars):
            out.extend(self.find(batch).mentions())
        return out

    def find(self, texts: Sequence[str]) -> Matches:
        """All mentions in `texts` as arrays (document index, start, end, node row, negated): the fast path."""
        texts = list(texts)
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        doc_starts = np.zeros(len(texts), dtype=np.int64)
        if len(texts) > 1:
            doc_starts[1:] = np.cumsum(lengths[:-1] + len(_SEPARATOR))
        joined = _SEPARATOR.join(texts)
        folded = fold(joined)
        scanned, kept = _collapse_separator_runs(" " + folded + " ", joined)
        data = scanned.encode("utf-8")
        found = self.automaton.find_matches_as_indexes(data, overlapping=True)
        if not found and self.abbreviations is None:
            return self._empty(len(texts))
        hits = np.fromiter(chain.from_iterable(found), dtype=np.int64, count=3 * len(found)).reshape(-1, 3)
        if len(data) != len(scanned):  # non-ASCII text: byte offsets -> character offsets
            continuation = (np.frombuffer(data, dtype=np.uint8) & 0xC0) == 0x80
            before = np.concatenate(([0], np.cumsum(continuation, dtype=np.int64)))
            hits[:, 1:] -= before[hits[:, 1:]]
        if kept is not None:  # offsets in the collapsed text -> offsets in the padded text, by the form's own letters
            hits[:, 1] = kept[hits[:, 1] + 1] - 1
            hits[:, 2] = kept[hits[:, 2] - 2] + 2
        value = self.values[self.pattern_rows[hits[:, 0]]].reshape(-1, 4)
        # the padded text is folded shifted by one: a pattern " form " at padded [s, e) covers folded [s, e - 2)
        starts = hits[:, 1]
        ends = hits[:, 2] - 2
        if len(starts):
            keep = _leftmost_longest(starts, ends)
            starts, ends, value = starts[keep], ends[keep], value[keep]
        code, node, acronym = value[:, 0], value[:, 1], value[:, 3].astype(bool)
        is_mention = code == _ENTITY
        if acronym.any():
            is_mention &= self._case_guard(joined, starts, ends, acronym)
        if len(code):
            starts, node, is_mention = self._qualified_diseases(joined, starts, ends, code, node, is_mention)
        how = np.zeros(len(code), dtype=np.int64)
        if self.abbreviations is not None:
            starts, ends, code, node, is_mention, how = self._add_abbreviations(
                texts, joined, doc_starts, starts, ends, code, node, is_mention, how
            )
        negated = np.zeros(len(code), dtype=bool)
        family = historical = negated
        if self.options.negation and np.isin(code, (_PRE, _POST)).any():
            barriers = np.sort(np.concatenate((_terminator_positions(joined), starts[code == _TERMINATOR])))
            negated = self._in_scope(
                folded, starts, ends, code, is_mention, _PRE, _POST, self.options.scope_words, barriers
            )
        if self.options.context and np.isin(code, (_FAMILY_PRE, _FAMILY_POST, _HISTORICAL_PRE, _HISTORICAL_POST)).any():
            barriers = np.sort(np.concatenate((_scope_end_positions(joined), starts[code == _TERMINATOR])))
            window = self.options.context_scope_words
            family = self._in_scope(
                folded, starts, ends, code, is_mention, _FAMILY_PRE, _FAMILY_POST, window, barriers
            )
            historical = self._in_scope(
                folded, starts, ends, code, is_mention, _HISTORICAL_PRE, _HISTORICAL_POST, window, barriers
            )
        order = np.flatnonzero(is_mention)
        if not len(order):
            return self._empty(len(texts))
        order = order[np.argsort(starts[order], kind="stable")]
        doc = np.searchsorted(doc_starts, starts[order], side="right") - 1
        return Matches(
            doc=doc.astype(np.int32),
            start=starts[order] - doc_starts[doc],
            end=ends[order] - doc_starts[doc],
            node=node[order].astype(np.int32),
            negated=negated[order],
            n_docs=len(texts),
            linker=self,
            family=family[order],
            historical=historical[order],
            abbreviation=how[order],
        )

    # -- qualified names: "autosomal dominant X", "familial X", "GENE-related X" ----------------------------------------
    def _qualified_diseases(self, joined, starts, ends, code, node, is_mention):
        """Extend a disease mention over the qualifier written before it when the tree says what the qualified name
        is: an inheritance mode that is the disease's only one in HPO ("autosomal dominant partial epilepsy with
        auditory features"), or the one mode of exactly one disease below it ("autosomal recessive hyper-IgE
        syndrome" -> DOCK8 deficiency); "familial" / "hereditary" before a disease with a Mendelian mode; and a gene
        before "-related" / "-associated" that HPO associates with exactly one disease that is the mention's node,
        lies below it or carries its name ("CAV3-related distal myopathy" -> Distal myopathy, Tateyama type).
        A qualifier the tree cannot resolve leaves the mention as it was (no widening to the unqualified node)."""
        index = self._qualifier_index()
        mention_rows = np.flatnonzero(is_mention)
        disease = mention_rows[index.is_disease[node[mention_rows]]]
        qualifier = np.flatnonzero((code == _HEREDITARY) | (is_mention & (index.mode[np.maximum(node, 0)] > 0)))
        pairs: list[tuple[int, int, int]] = []  # (qualifier row or -1, disease row, target node)
        if len(disease) and len(qualifier):
            order = disease[np.argsort(starts[disease], kind="stable")]
            at = np.searchsorted(starts[order], ends[qualifier] + 1)
            found = at < len(order)
            hit = np.zeros(len(qualifier), dtype=bool)
            hit[found] = starts[order[at[found]]] == ends[qualifier[found]] + 1
            for q, d in zip(qualifier[hit].tolist(), order[at[hit]].tolist(), strict=True):
                mode = 0 if code[q] == _HEREDITARY else int(index.mode[node[q]])
                target = index.inherited(int(node[d]), mode)
                if target is not None:
                    pairs.append((q, d, target))
        if "-related " in joined or "-associated " in joined:
            pairs += self._gene_qualified(joined, starts, ends, node, disease)
        if not pairs:
            return starts, node, is_mention
        starts, node, is_mention = starts.copy(), node.copy(), is_mention.copy()
        for q, d, target in pairs:
            if q >= 0:
                is_mention[q] = False
                starts[d] = starts[q]
            else:
                starts[d] = -q - 1  # the gene's start, encoded by `_gene_qualified`
            node[d] = target
        return starts, node, is_mention

    def _gene_qualified(self, joined, starts, ends, node, disease) -> list[tuple[int, int, int]]:
        index = self._qualifier_index()
        by_start = {int(starts[d]): d for d in disease.tolist()}
        out = []
        for word in ("-related ", "-associated "):
            at = joined.find(word)
            while at >= 0:
                d = by_start.get(at + len(word))
                if d is not None:
                    match = _GENE_QUALIFIER.search(joined[max(0, at - 13) : at + len(word)])
                    if match:
                        gene_start = at - len(match.group(1))
                        target = index.gene_form(match.group(1), int(node[d]), joined[starts[d] : ends[d]])
                        if target is not None:
                            out.append((-gene_start - 1, d, target))
                at = joined.find(word, at + 1)
        return out

    def _qualifier_index(self) -> _QualifierIndex:
        if self._qualifiers is None:
            self._qualifiers = _QualifierIndex(self)
        return self._qualifiers

    def _add_abbreviations(self, texts, joined, doc_starts, starts, ends, code, node, is_mention, how):
        """Append the abbreviation mentions of each document that has a candidate (a listed short form or a
        parenthesized one); those inside an existing mention are skipped."""
        resolver = self.abbreviations
        mention_doc = np.searchsorted(doc_starts, starts[is_mention], side="right") - 1
        m_starts, m_ends = starts[is_mention], ends[is_mention]
        added: list[tuple[int, int, int, int]] = []
        listed, definitions = resolver.candidates(joined)
        listed_starts = np.asarray([span[0] for span in listed], dtype=np.int64)
        listed_doc = np.searchsorted(doc_starts, listed_starts, side="right") - 1
        docs = np.unique(
            np.concatenate((listed_doc, np.searchsorted(doc_starts, definitions, side="right") - 1))
        )
        order = np.argsort(m_starts, kind="stable")
        m_starts, m_ends, mention_doc = m_starts[order], m_ends[order], mention_doc[order]
        for index in docs.tolist():
            base = int(doc_starts[index])
            lo, hi = np.searchsorted(mention_doc, [index, index + 1])
            a, b = np.searchsorted(listed_doc, [index, index + 1])
            spans = [(s - base, e - base) for s, e in listed[a:b]]
            for start, end, row, kind in resolver.find(
                texts[index], spans, m_starts[lo:hi] - base, m_ends[lo:hi] - base
            ):
                added.append((base + start, base + end, row, 1 if kind == "defined" else 2))
        if not added:
            return starts, ends, code, node, is_mention, how
        extra = np.asarray(added, dtype=np.int64)
        n = len(extra)
        return (
            np.concatenate((starts, extra[:, 0])),
            np.concatenate((ends, extra[:, 1])),
            np.concatenate((code, np.full(n, _ENTITY))),
            np.concatenate((node, extra[:, 2])),
            np.concatenate((is_mention, np.ones(n, dtype=bool))),
            np.concatenate((how, extra[:, 3])),
        )

    def _empty(self, n_docs: int) -> Matches:
        empty = np.zeros(0, dtype=np.int64)
        return Matches(
            empty.astype(np.int32), empty, empty, empty.astype(np.int32), empty.astype(bool), n_docs, self
        )

    @staticmethod
    def _case_guard(text: str, starts: np.ndarray, ends: np.ndarray, acronym: np.ndarray) -> np.ndarray:
        """Acronym forms must be written without lower-case letters, and not inside an all-caps heading."""
        ok = np.ones(len(starts), dtype=bool)
        candidates = np.flatnonzero(acronym)
        # most candidates are lower-case words ("all"): reject those by their first and last letter, vectorized
        first = np.fromiter((ord(text[i]) for i in starts[candidates]), dtype=np.int64, count=len(candidates))
        last = np.fromiter(
            (ord(text[i - 1]) for i in ends[candidates]), dtype=np.int64, count=len(candidates)
        )
        lower = ((first >= 97) & (first <= 122)) | ((last >= 97) & (last <= 122))
        ok[candidates[lower]] = False
        for i in candidates[~lower].tolist():
            span = text[starts[i] : ends[i]]
            if any(c.islower() for c in span):
                ok[i] = False
                continue
            before = text[max(0, starts[i] - 40) : starts[i]].split()
            after = text[ends[i] : ends[i] + 40].split()
            neighbours = [w for w in (before[-1:] + after[:1]) if sum(c.isalpha() for c in w) >= 2]
            ok[i] = not any(w.isupper() for w in neighbours)
        return ok

    @staticmethod
    def _in_scope(folded, starts, ends, code, is_mention, pre, post, window, barriers) -> np.ndarray:
        """NegEx/ConText scope: a `pre` cue ending at most `window` words before the mention, or a `post` cue
        starting at most `window` words after it, with no barrier (sentence end, terminator) in between."""
        reach = 40 * (window + 1)  # characters: a cheap prefilter before words are counted
        pre_end = np.sort(ends[code == pre])
        post_start = np.sort(starts[code == post])
        m_start, m_end = starts[is_mention], ends[is_mention]

        def near(left: np.ndarray, right: np.ndarray, candidate: np.ndarray) -> np.ndarray:
            ok = candidate & (right - left <= reach) & (right >= left)
            ok &= np.searchsorted(barriers, left) == np.searchsorted(barriers, right)  # no barrier between
            index = np.flatnonzero(ok)
            words = [
                len(folded[a:b].split())
                for a, b in zip(left[index].tolist(), right[index].tolist(), strict=True)
            ]
            ok[index] = np.asarray(words, dtype=np.int64) <= window
            return ok

        hit = np.zeros(len(m_start), dtype=bool)
        if len(pre_end):
            i = np.searchsorted(pre_end, m_start, side="right") - 1
            hit |= near(pre_end[np.maximum(i, 0)], m_start, i >= 0)
        if len(post_start):
            i = np.searchsorted(post_start, m_end, side="left")
            hit |= near(m_end, post_start[np.minimum(i, len(post_start) - 1)], i < len(post_start))
        out = np.zeros(len(starts), dtype=bool)
        out[is_mention] = hit
        return out

    # -- records ----------------------------------------------------------------------------------------------------
    def annotate(self, records: Iterable, batch_chars: int = 4_000_000) -> list:
        """Records with `entities` filled from their text, question and options (offsets into `record.text`
        for text mentions; mentions found elsewhere carry `field` in their extra data)."""
        records = list(records)
        fields = [_record_fields(record) for record in records]
        flat = [text for parts in fields for _, text in parts]
        mentions = self.link_batch(flat, batch_chars)
        out, cursor = [], 0
        for record, parts in zip(records, fields, strict=True):
            entities = []
            for name, _ in parts:
                for mention in mentions[cursor]:
                    if name != "text":
                        mention = type(mention)(**mention.model_dump(), field=name)
                    entities.append(mention)
                cursor += 1
            out.append(record.model_copy(update={"entities": entities}))
        return out


class _QualifierIndex:
    """What `Linker._qualified_diseases` needs from the tree: each node's HPO inheritance bits, the inheritance mode
    a clinical-attribute node names, children, genes -> diseases, and each node's forms."""

    def __init__(self, linker: Linker) -> None:
        frame = linker._tree.frame
        n = len(frame)
        self.linker = linker
        self.is_disease = (frame["kind"] == "disease").to_numpy()
        self.mode = np.zeros(n, dtype=np.int64)  # the mode a clinical attribute names ("autosomal dominant")
        for hpo_id, bit in INHERITANCE_BITS.items():
            row = linker._tree.index.get(hpo_id)
            if row is not None:
                self.mode[row] = bit
        self.inheritance = np.zeros(n, dtype=np.int64)
        self.genetic = np.zeros(n, dtype=bool)  # rare, with a Mendelian mode or a gene in HPO (Orphanet: no modes)
        self.genes: dict[str, list[int]] = {}
        for row, attributes in enumerate(frame["attributes"].tolist()):
            if '"inheritance"' not in attributes and '"genes"' not in attributes:
                continue
            data = json.loads(attributes)
            for hpo_id in data.get("inheritance", ()):
                self.inheritance[row] |= INHERITANCE_BITS.get(hpo_id, 0)
            for gene in data.get("genes", ()):
                self.genes.setdefault(gene.upper(), []).append(row)
            mendelian = self.inheritance[row] & 0b11111 or data.get("genes")
            self.genetic[row] = bool(mendelian) and not self.inheritance[row] & 32
        # "familial X" names X only where X is a rare genetic disease: "familial Alzheimer disease" is a subset
        self.genetic &= frame["rare"].astype(bool).to_numpy()
        self.children: dict[int, list[int]] = {}
        index = linker._tree.index
        for row, parents in enumerate(frame["parent_ids"].tolist()):
            for parent in parents:
                parent_row = index.get(parent)
                if parent_row is not None:
                    self.children.setdefault(parent_row, []).append(row)
        self._forms: dict[int, list[str]] | None = None

    def inherited(self, row: int, mode: int) -> int | None:
        """The node that "<mode> <name of row>" names: row itself when `mode` is its only inheritance mode (any
        Mendelian mode or a gene of a rare disease for "familial"/"hereditary"), else the one disease up to two levels below it with
        only that mode; None when there is none or more than one."""
        bits = int(self.inheritance[row])
        if mode == 0:
            return row if self.genetic[row] else None
        if bits == mode:
            return row
        below = {c for c in self.children.get(row, ())}
        below |= {g for c in below for g in self.children.get(c, ())}
        matches = [c for c in below if self.is_disease[c] and int(self.inheritance[c]) == mode]
        return matches[0] if len(matches) == 1 else None

    def gene_form(self, gene: str, row: int, surface: str) -> int | None:
        """The disease of `gene` that is `row`, else its one child among them, else the one with a form containing
        the mention's words."""
        candidates = self.genes.get(gene.upper()) or self.genes.get(gene.upper().replace("-", ""))
        if not candidates:
            return None
        if row in candidates:
            return row
        parents = self.linker._tree.frame["parent_ids"]
        row_id = self.linker.ids[row]
        below = {c for c in candidates if row_id in parents.iat[c]}
        if len(below) == 1:  # a child of the mention's node first ("Cardiomyopathy, dilated, 3B" under DCM)
            return below.pop()
        words = f" {normalize_form(surface)} "
        named = {c for c in candidates if any(words in f" {form} " for form in self.forms().get(c, ()))}
        return named.pop() if len(named) == 1 else None

    def forms(self) -> dict[int, list[str]]:
        if self._forms is None:
            self._forms = {}
            for form, row in self.linker.form_nodes.items():
                self._forms.setdefault(row, []).append(form)
        return self._forms


def _record_fields(record) -> list[tuple[str, str]]:
    parts = [("text", record.text or "")]
    if record.question:
        parts.append(("question", record.question))
    for letter, option in sorted((record.options or {}).items()):
        parts.append((f"option:{letter}", option))
    if record.reasoning:
        parts.append(("reasoning", record.reasoning))
    return parts


def batches(texts: Sequence[str], batch_chars: int) -> Iterable[list[str]]:
    batch: list[str] = []
    size = 0
    for text in texts:
        batch.append(text)
        size += len(text)
        if size >= batch_chars:
            yield batch
            batch, size = [], 0
    if batch or not texts:
        yield batch


_TERMINATOR_TABLE = bytes(1 if chr(c) in negation.TERMINATOR_CHARS or c == 0 else 0 for c in range(256))


def _terminator_positions(text: str) -> np.ndarray:
    """Offsets of the characters that end a negation scope (sentence punctuation, line breaks, NUL separators)."""
    if text.isascii():
        return np.flatnonzero(
            np.frombuffer(text.encode("ascii").translate(_TERMINATOR_TABLE), dtype=np.uint8)
        )
    chars = code_points(text)
    return np.flatnonzero(np.isin(chars, [0, *map(ord, negation.TERMINATOR_CHARS)]))


_SCOPE_END_TABLE = bytes(1 if chr(c) in context.SCOPE_END_CHARS or c == 0 else 0 for c in range(256))


def _scope_end_positions(text: str) -> np.ndarray:
    """Offsets that end an experiencer/temporality scope (sentence ends, NUL separators; not colons)."""
    if text.isascii():
        return np.flatnonzero(np.frombuffer(text.encode("ascii").translate(_SCOPE_END_TABLE), dtype=np.uint8))
    return np.flatnonzero(np.isin(code_points(text), [0, *map(ord, context.SCOPE_END_CHARS)]))


# Separators that end a sentence or clause, and brackets: a run of separators holding one is kept whole, so a form
# never matches across it ("... chest pain. Fever" is no "pain fever", "fibrous (connective) tissue" no "connective
# tissue"); a source name holding one ("St. Louis encephalitis") is stored with the same run.
_CLAUSE_CHARS = ".;:!?()[]"
_CLAUSE_END = np.zeros(256, dtype=bool)
_CLAUSE_END[[ord(c) for c in _CLAUSE_CHARS]] = True
_CLAUSE_TABLE = bytes(_CLAUSE_END.astype(np.uint8))
_SEPARATOR_RUN = re.compile(r" {2,}")


def _collapse_separator_runs(padded: str, original: str) -> tuple[str, np.ndarray | None]:
    """The padded folded text with each run of separators collapsed to one space, unless the run holds a clause end
    or a bracket, and the padded position of each kept character (None when nothing was collapsed). Forms are stored
    the same way (`_form_spelling`), so "neuropathy, type II", "ataxia, and retinitis" and "X - Y" in a text match
    the source's "neuropathy type II" and "ataxia and retinitis" without a stored spelling for every punctuation."""
    chars = code_points(padded)
    space = chars == 32
    doubled = np.zeros(len(chars), dtype=bool)
    doubled[1:] = space[1:] & space[:-1]  # a separator following a separator
    if not doubled.any():
        return padded, None
    if original.isascii():  # the common case: one C pass
        clause_end = np.frombuffer(f" {original} ".encode("ascii").translate(_CLAUSE_TABLE), dtype=bool)
    else:
        source = code_points(original)  # padded i is original i - 1
        clause_end = np.zeros(len(chars), dtype=bool)
        clause_end[1:-1] = _CLAUSE_END[np.minimum(source, 255)] & (source < 256)
    starts_run = space.copy()
    starts_run[1:] &= ~space[:-1]
    run = np.cumsum(starts_run, dtype=np.int32)
    whole = np.zeros(int(run[-1]) + 1, dtype=bool)
    whole[run[clause_end]] = True  # runs holding a clause end stay as they are
    keep = ~(doubled & ~whole[run])
    if keep.all():
        return padded, None
    kept = np.flatnonzero(keep)
    collapsed = chars[kept]
    text = collapsed.tobytes().decode("ascii") if collapsed.dtype == np.uint8 else collapsed.tobytes().decode("utf-32-le")
    return text, kept


def _form_spelling(text: str) -> str:
    """A source form as the text scan sees it: folded, each run of separators one space unless it holds a clause
    end or a bracket (see `_collapse_separator_runs`)."""
    folded = fold(text)
    if "  " in folded:
        folded = _SEPARATOR_RUN.sub(
            lambda m: m.group(0) if any(c in _CLAUSE_CHARS for c in text[m.start() : m.end()]) else " ", folded
        )
    return folded.strip()


def _leftmost_longest(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Indices of the matches kept: drop every match inside a longer one, then the later of two that overlap."""
    order = np.lexsort((-ends, starts))
    sorted_ends = ends[order]
    covered = np.empty(len(order), dtype=np.int64)
    covered[0] = -1
    covered[1:] = np.maximum.accumulate(sorted_ends)[:-1]
    keep = covered < starts[order]  # starts after everything before it ends: neither inside nor overlapping
    return np.sort(order[keep])


def _plural(form: str) -> str | None:
    head, _, last = form.rpartition(" ")
    if len(last) < 4 or not last.isalpha() or not last[1:].islower() or "," in form:
        return None
    for pattern, replacement in _PLURAL_RULES:
        if pattern.search(last):
            return f"{head} {pattern.sub(replacement, last)}".strip()
    return None if last.endswith(("s", "ae")) else f"{form}s"


def _swap_numeral(match: re.Match) -> str:
    """'type 1' <-> 'type I' (1-10)."""
    word, number = match.group(1), match.group(2)
    if number.isdigit():
        return (
            f"{word} {_ROMAN[int(number) - 1].upper()}" if 1 <= int(number) <= len(_ROMAN) else match.group(0)
        )
    lower = number.lower()
    return f"{word} {_ROMAN.index(lower) + 1}" if lower in _ROMAN else match.group(0)


def _uninverted(form: str) -> list[str]:
    """'Pulmonary disease, chronic obstructive' -> 'chronic obstructive Pulmonary disease'; 'Spastic paraplegia 8,
    autosomal recessive' -> 'Spastic paraplegia 8', 'Spastic paraplegia type 8'; 'Migraine, familial hemiplegic, 1'
    -> 'familial hemiplegic Migraine 1', '... type 1'; 'Czech dysplasia, metatarsal type' -> 'Czech dysplasia';
    'Ichthyosis, hystrix-like, with deafness' -> 'hystrix-like Ichthyosis with deafness'."""
    head, *qualifiers = (part.strip() for part in form.split(", "))
    if qualifiers and qualifiers[-1].lower() == "deficiency of":  # "Phosphoglycerate mutase, muscle, deficiency of"
        return [f"{head} deficiency", " ".join([*qualifiers[:-1], head, "deficiency"])]
    if qualifiers and qualifiers[-1].lower().endswith(" due to"):  # "CPS I deficiency, hyperammonemia due to"
        return [head]
    number = ""
    trailing = [q for q in qualifiers if _TRAILING_QUALIFIER.match(q)]
    leading = [q for q in qualifiers if not _TRAILING_QUALIFIER.match(q)]
    if trailing and not any(c.isdigit() for q in leading for c in q):
        # "Pseudohypoaldosteronism, type I, autosomal dominant" -> "Pseudohypoaldosteronism type I" (the inheritance
        # only narrows it) and "autosomal dominant Pseudohypoaldosteronism type I"
        named = [" ".join([*leading, head, *trailing])]
        if leading and all(_SUBTYPE_QUALIFIER.match(q) for q in leading):
            named.append(" ".join([head, *trailing]))
        if not leading and len(trailing) == 1 and trailing[0][:5].lower() == "type ":
            named.append(f"{trailing[0]} {head}")  # "Insulin resistance syndrome, Type A" -> "Type A Insulin ..."
        return named
    if qualifiers and (qualifiers[-1].isdigit() or re.fullmatch(r"\d+[a-z]?|[ivx]+[a-z]?", qualifiers[-1], re.I)):
        number = qualifiers.pop()
    out = []
    if qualifiers and (all(_SUBTYPE_QUALIFIER.match(q) for q in qualifiers) or _TRAILING_NUMBER.match(head)):
        out.append(head)  # the qualifiers only narrow the subtype, or the head is a numbered subtype already
    if qualifiers and not any(c.isdigit() for q in qualifiers for c in q):
        out.append(" ".join([*qualifiers, head]))
    if number:
        out = [f"{text} {number}" for text in out or [head]]
    numbered = []
    for text in out or [head]:
        match = _TRAILING_NUMBER.match(text)
        if match and " type " not in f" {text.lower()} ":
            numbered.append(f"{match.group(1)} type {match.group(2)}")
    return out + numbered


def _variants(form: str, kind: str) -> list[str]:
    """Spelling variants of a source form: bracketed qualifiers, ', unspecified' and possessive 's dropped or added,
    diacritics folded to ASCII, and (for diseases, phenotypes, symptoms and anatomy) the plural of the last word.
    Diseases also get the spellings prose uses: a trailing subtype numeral with "type", "of the" for "of", and without
    a "with or without ..." tail, a leading "chromosome" or a trailing "spectrum"."""
    # each rule runs only where its cheap substring test says it can apply (this runs for ~300k forms)
    candidates = []
    if "(" in form or "[" in form:
        candidates.append(_BRACKETED.sub("", form))
    if "," in form or form.endswith(("NOS", "nos")):
        candidates.append(_UNSPECIFIED.sub("", form))
    if "'" in form or "’" in form:
        candidates.append(_POSSESSIVE.sub("", form))
    if " disease" in form or " syndrome" in form or " palsy" in form or " sign" in form or " anomaly" in form:
        candidates.append(_EPONYM_HEAD.sub(r"\1's", form))
    if not form.isascii():
        candidates.append(unicodedata.normalize("NFKD", form).encode("ascii", "ignore").decode("ascii"))
        # scraped text that lost its non-ASCII letters: "Behet disease", "Sjgren syndrome", "Guillain-Barr"
        candidates.append(" ".join("".join(c for c in form if c.isascii()).split()))
    if kind == "disease":
        if form[:11].lower() == "hereditary " and form.endswith("deficiency"):
            candidates.append(form[11:])  # "Hereditary butyrylcholinesterase deficiency"
        if ", " in form:
            candidates.extend(_uninverted(form))
        if " due to " in form and form.endswith(" deficiency"):
            # Orphanet names a disease by its manifestation and cause; prose by the cause: "Congenital adrenal
            # hyperplasia due to 3-beta-hydroxysteroid dehydrogenase deficiency" is "3-beta-hydroxysteroid ..."
            candidates.append(form[form.index(" due to ") + 8 :])
        if form.endswith("CDG") and _CDG.search(form):
            candidates.append(_CDG.sub("congenital disorder of glycosylation", form))
        if not lowered_tail_is_head(form) and "," not in form and " due to " not in form and _SYNDROME_LESS.search(form):
            candidates.append(f"{form} syndrome")
        if "immunodeficiency" in form:  # "common variable immune deficiency"
            candidates.append(form.replace("immunodeficiency", "immune deficiency"))
        if form.endswith(("-related disease", "-related disorder")):  # "MYH9-related disease" / "... disorder"
            candidates.append(form[: form.rindex(" ")] + (" disorder" if form.endswith("disease") else " disease"))
        if form.endswith(("disease", "syndrome")):
            match = _EPONYM_SWAP.match(form)
            if match and not match.group(1).endswith(_ADJECTIVE_ENDINGS):
                other = "syndrome" if match.group(2) == "disease" else "disease"
                candidates.append(f"{match.group(1)} {other}")
            match = _CHROMOSOMAL_SYNDROME.match(form)
            if match:
                candidates.append(match.group(1))
        if form[:5].lower() == "type ":
            candidates.append(_LEADING_TYPE.sub(r"\2 type \1", form))
        lowered = form.lower()
        if "," not in form:
            match = _TRAILING_NUMBER.match(form)
            if match and not match.group(1).lower().endswith((" type", " group", " class")):
                candidates.append(f"{match.group(1)} type {match.group(2)}")  # "Glycogen storage disease VII"
        if " with or without " in lowered:  # "Gyrate atrophy of choroid and retina with or without ornithinemia"
            candidates.append(form[: lowered.index(" with or without ")])
        if " of " in lowered and " of the " not in lowered:  # "absence of vas deferens" as prose writes it
            candidates.append(re.sub(r" of (?!the )", " of the ", form, count=1, flags=re.IGNORECASE))
        if lowered.startswith("chromosome ") and lowered[11:12].isdigit():  # "chromosome 18q deletion syndrome"
            candidates.append(form[11:])
        if lowered.endswith(" spectrum"):  # "Stevens-Johnson syndrome/toxic epidermal necrolysis spectrum"
            candidates.append(form[: -len(" spectrum")])
    if kind in _PLURAL_KINDS:
        candidates.append(_plural(form) or "")
        if form.endswith("ies") and len(form) > 8:  # ICD-10-CM names categories in the plural: "... deficiencies"
            candidates.append(form[:-3] + "y")
    for text in [form, *candidates]:  # "Pseudohypoaldosteronism type I" (un-inverted) -> "... type 1"
        lowered = text.lower()
        if "type " in lowered or "group " in lowered or "class " in lowered:
            candidates.append(_TYPE_NUMBER.sub(_swap_numeral, text))
    out = []
    for candidate in candidates:
        candidate = candidate.strip()
        if candidate and candidate != form and candidate not in out:
            out.append(candidate)
    return out


_COMPOUND_KINDS = frozenset({"disease", "phenotype", "symptom"})
_LONG_WORD = re.compile(r"[a-z]{9,}")


class _CompoundSplitter:
    """Compounds of combining forms are also written with hyphens: "Auriculocondylar syndrome" as
    "auriculo-condylar syndrome", "Laryngoonychocutaneous" as "laryngo-onycho-cutaneous", "venoocclusive" as
    "veno-occlusive". A word splits after an "o" where the rest is a word (5+ letters) of some disease, phenotype or
    symptom name, or splits again the same way."""

    def __init__(self, frame) -> None:
        self.words: set[str] = set()
        for name, synonyms, kind in zip(frame["name"], frame["synonyms"], frame["kind"], strict=True):
            if kind in _COMPOUND_KINDS:
                for text in (name, *synonyms):
                    self.words.update(word for word in fold(text).split() if len(word) >= 5 and word.isalpha())
        self.memo: dict[str, str | None] = {}

    def split(self, text: str) -> str | None:
        """`text` with its compounds hyphenated, or None when none splits."""
        lowered = text.lower()
        out, changed = lowered, False
        for word in _LONG_WORD.findall(lowered):
            parts = self._split_word(word)
            if parts:
                out, changed = re.sub(rf"\b{word}\b", parts, out), True
        return out if changed else None

    def _split_word(self, word: str) -> str | None:
        if word in self.memo:
            return self.memo[word]
        self.memo[word] = None  # no recursion into itself
        found = None
        for cut in range(4, len(word) - 4):
            if word[cut - 1] != "o":
                continue
            rest = word[cut:]
            if rest in self.words:
                found = f"{word[:cut]}-{rest}"
                break
            if len(rest) >= 9 and (inner := self._split_word(rest)):
                found = f"{word[:cut]}-{inner}"
                break
        self.memo[word] = found
        return found


# "X-linked spinal and bulbar muscular atrophy" is "spinal and bulbar muscular atrophy" when X-linked is the
# disease's only inheritance mode in HPO (there is no other form of it to tell apart).
_MODE_PHRASES = {"autosomal dominant ": 1, "autosomal recessive ": 2, "x-linked ": 4, "x linked ": 4}
_MODE_PREFIXES = frozenset(phrase[:9] for phrase in _MODE_PHRASES)


def _without_redundant_mode(spellings: list[tuple[str, int]], attributes: str) -> list[tuple[str, int]]:
    bits = 0
    for hpo_id in json.loads(attributes).get("inheritance", ()):
        bits |= INHERITANCE_BITS.get(hpo_id, 0)
    out = []
    for text, origin in spellings:
        lowered = text.lower()
        for phrase, mode in _MODE_PHRASES.items():
            if lowered.startswith(phrase) and bits == mode:
                out.append((text[len(phrase) :], 2 + origin % 2))
    return out


def lowered_tail_is_head(form: str) -> bool:
    """The name ends with a head noun ("syndrome", "disease", "disorder" ...)."""
    return form.rpartition(" ")[2].lower() in _HEAD_NOUNS


def _collect_forms(tree: EntityTree, options: LinkerOptions) -> tuple[dict[str, _Form], dict]:
    """One node per normalized form: preferred names beat synonyms, source spellings beat variants, then kind
    order (diseases first) and id priority break ties."""
    from medfoundry.entities.tree import _KIND_PRIORITY, _priority

    frame = tree.frame
    forms: dict[str, _Form] = {}
    first_node: dict[str, int] = {}
    ambiguous: set[str] = set()
    dropped = {"short": 0, "ambiguous_word": 0, "generic": 0, "numeric": 0, "two_letter_acronym": 0}
    attributes = frame["attributes"].tolist()
    rows = zip(
        range(len(frame)),
        frame["id"],
        frame["name"],
        frame["synonyms"],
        frame["kind"],
        frame["linkable"],
        strict=True,
    )
    compounds = _CompoundSplitter(frame)
    for row, node_id, name, synonyms, kind, linkable in rows:
        if not linkable:
            continue
        kind_rank, id_rank = _KIND_PRIORITY.get(kind, 99), _priority(node_id)
        spellings = [(name, 0)] + [(synonym, 1) for synonym in synonyms]
        spellings += [
            (variant, 2 + origin) for text, origin in spellings for variant in _variants(text, kind)
        ]
        if kind in _COMPOUND_KINDS:
            spellings += [(split, 2 + origin) for text, origin in spellings if (split := compounds.split(text))]
        if kind == "disease" and any(text[:9].lower() in _MODE_PREFIXES for text, _ in spellings):
            spellings += _without_redundant_mode(spellings, attributes[row])
        for text, origin in spellings:
            spelling = _form_spelling(text)
            key = " ".join(spelling.split()) if "  " in spelling else spelling
            if not key:
                continue
            acronym = is_acronym(text)
            single_word = " " not in key
            if key.replace(" ", "").isdigit():
                dropped["numeric"] += 1
                continue
            if single_word and (key in GENERIC_FORMS or kind == "clinical_attribute"):
                dropped["generic"] += 1
                continue
            if acronym and len(key) <= 2:
                dropped["two_letter_acronym"] += 1
                continue
            if len(key) < options.min_length:
                dropped["short"] += 1
                continue
            if not acronym and kind in ("drug", "drug_class") and origin == 1 and single_word:
                acronym = len(key) <= options.short_drug_synonym  # the drug dictionary lower-cases acronyms
            if key in AMBIGUOUS_WORDS and not acronym:
                dropped["ambiguous_word"] += 1
                continue
            rank = (origin, kind_rank, id_rank)
            if first_node.setdefault(key, row) != row:
                ambiguous.add(key)
            current = forms.get(key)
            if current is None or rank < current.rank:
                current = forms[key] = _Form(key, row, rank, acronym, current.spellings if current else set())
            if spelling != key:
                current.spellings.add(spelling)
    stats = {
        "forms": len(forms),
        "acronym_forms": sum(f.acronym for f in forms.values()),
        "dropped": dropped,
        "ambiguous_forms": len(ambiguous),
    }
    return forms, stats
