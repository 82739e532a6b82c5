"""studies.fmnist32.markdown.pairing_section: the table of what the pairing bought, as summary.md prints it."""

from studies.fmnist32.markdown import pairing_section


def test_pairing_section_prints_one_row_per_pair_and_fid_and_dashes_what_is_undefined():
    gain = {"seeds": [0, 1, 2], "n": 3, "sd_paired": 2.0, "sd_unpaired": 4.0, "r": 0.8125, "variance_ratio": 4.0}
    flat = {**gain, "r": None, "variance_ratio": None}
    summary = {"options": {"n": 5000}, "pairing": {"hamgan-sagan": {"fid_at_2000@3000": gain, "fid@4000": flat},
                                                   "hamgan-none": {}}}
    lines = pairing_section(summary)
    rows = [l for l in lines if l.startswith("| hamgan")]
    assert rows == ["| hamgan-sagan | FID@2000, step 3000 | 3 | 2.00 | 4.00 | +0.81 | 4.00 |",
                    "| hamgan-sagan | FID@5000, step 4000 | 3 | 2.00 | 4.00 | - | - |"]
    assert pairing_section({"options": {"n": 5000}, "pairing": {"hamgan-none": {}}}) == []
    assert pairing_section({"options": {"n": 5000}}) == []   # a summary written before the table existed
