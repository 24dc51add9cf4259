from reconcile.yamlsource import parse_yaml


def test_yaml_1_1_booleans_and_octals_stay_strings_because_they_are_codes():
    doc = parse_yaml("codes: [no, yes, on, off, 010, 1.5, 2025-12-31]\nflag: true\nnothing: null\n")
    assert doc.data == {
        "codes": ["no", "yes", "on", "off", "010", "1.5", "2025-12-31"],
        "flag": True,
        "nothing": None,
    }


def test_duplicate_keys_are_recorded_with_both_positions():
    doc = parse_yaml("a:\n  b: 1\n  c: 2\n  b: 3\n")
    assert doc.duplicates == [(("a", "b"), (4, 3), (2, 3))]
    assert doc.data == {"a": {"b": "3", "c": "2"}}


def test_locate_falls_back_to_the_nearest_ancestor_and_keeps_the_key_path():
    doc = parse_yaml("a:\n  b: {c: 1}\n", "f.yaml")
    assert (doc.locate(("a", "b", "c")).line, doc.locate(("a", "b", "c")).column) == (2, 10)
    missing = doc.locate(("a", "b", "zz"))
    assert (missing.line, missing.column, missing.dotted) == (2, 3, "a.b.zz")
    assert str(missing) == "f.yaml:2:3 (a.b.zz)"
