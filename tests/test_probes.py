"""The shipped probe prompts load from the installed package."""

from search_core.probes import load_probe_prompts


def test_probe_prompts_ship_a_few_hundred_distinct_prompts():
    prompts = load_probe_prompts()
    assert 200 <= len(prompts) <= 1000
    assert len(set(prompts)) == len(prompts)
    assert all(p and not p.startswith("#") and len(p) < 200 for p in prompts)
