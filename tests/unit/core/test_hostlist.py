import pytest

from cmqueue.core.hostlist import HostlistError, expand, expand_list


def test_plain_name_is_itself():
    assert expand("gpu1") == ["gpu1"]


def test_zero_padded_range():
    assert expand("node[01-04]") == ["node01", "node02", "node03", "node04"]


def test_list_and_ranges_mixed():
    assert expand("n[1,3,5-7]") == ["n1", "n3", "n5", "n6", "n7"]


def test_two_brackets_give_the_product():
    assert expand("r[1-2]-n[1-2]") == ["r1-n1", "r1-n2", "r2-n1", "r2-n2"]


def test_range_inside_an_address():
    assert expand("10.0.0.1[1-4]") == ["10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.14"]


@pytest.mark.parametrize("bad", ["n[3-1]", "n[a-c]", "n[1-2", "n[]", "n[1,,2]"])
def test_bad_expressions_raise(bad):
    with pytest.raises(HostlistError):
        expand(bad)


def test_comma_list_keeps_commas_inside_brackets():
    assert expand_list("n[1,2],gpu1") == ["n1", "n2", "gpu1"]


@pytest.mark.parametrize("names, folded", [
    (["node01", "node02", "node03", "node05", "gpu1"], "node[01-03,05],gpu1"),
    (["m1", "m2", "m3"], "m[1-3]"),
    (["n1", "n2", "n10", "n11"], "n[1-2,10-11]"),
    (["n09", "n10", "n100"], "n[09-10],n100"),
    (["solo"], "solo"),
])
def test_fold_is_the_inverse_of_expand(names, folded):
    from cmqueue.core.hostlist import fold

    assert fold(names) == folded
    assert sorted(expand_list(folded)) == sorted(names)
