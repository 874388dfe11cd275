import pytest

from provisioning.roster import Device, RosterError, parse_roster, read_roster

GOOD = """site,ward,room,name,tags
st-marys,3B,3B-12,,
st-marys,3B,3B-14,cam-3b14,window corner
st-marys,3B,3B-16,cam-3b16-bed1,bed1;falls
st-marys,3B,3B-16,cam-3b16-bed2,
"""


def test_a_good_csv_gives_every_device():
    devices = parse_roster(GOOD)
    assert devices[0] == Device(2, "st-marys", "3B", "3B-12")
    assert devices[1].tags == ("window", "corner") and devices[2].tags == ("bed1", "falls")
    assert [d.label for d in devices] == ["3B-12", "cam-3b14", "cam-3b16-bed1", "cam-3b16-bed2"]
    assert len(parse_roster("ROOM , Ward,site\n3B-12,3B,st-marys\n")) == 1  # any order, any case, trimmed


def test_a_file_with_a_byte_order_mark_and_windows_line_ends_reads(tmp_path):
    path = tmp_path / "ward.csv"
    path.write_bytes("\ufeffsite,ward,room\r\nst-marys,3B,3B-12\r\n\r\n".encode())
    assert [d.room for d in read_roster(path)] == ["3B-12"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty; the first line names the columns"),
        ("site,ward,room\n", "no devices after the header line"),
        ("site,ward,room,bed\nx,y,z,1\n", "line 1, column 4: unknown column 'bed'"),
        ("site,ward\nx,y\n", "line 1: the header lacks column(s) room"),
        ("site,ward,room,room\nx,y,z,z\n", "line 1, column 4: column 'room' given twice"),
        ("site,ward,room\nst-marys,3B,\n", "line 2, column room: empty (room is required)"),
        ("site,ward,room\nst-marys,3B,3B 12\n", "line 2, column room: '3B 12' must be 1-64 letters"),
        ("site,ward,room,name\nst-marys,3B,3B-12,cam/1\n", "line 2, column name: 'cam/1' must be"),
        ("site,ward,room,tags\nst-marys,3B,3B-12,ok bad!\n", "line 2, column tags: 'bad!' must be"),
        ("site,ward,room,tags\nst-marys,3B,3B-12,a a\n", "line 2, column tags: at most 16 tags, each once"),
        ("site,ward,room\nst-marys,3B,3B-12,extra\n", "line 2: 4 cells but 3 columns"),
        ("site,ward,room\nst-marys,3B,3B-12\nst-marys,3B,3b-12\n", "line 3, column room: '3b-12' is already on line 2"),
        (
            "site,ward,room,name\nst-marys,3B,3B-12,cam-a\nst-marys,3B,3B-12,\n",
            "line 3, column room: room '3B-12' is already on line 2 (give each device in a shared room its own name)",
        ),
        (
            "site,ward,room,name\ns,w,3B-12,cam:1\ns,w,3B-14,cam_1\n",
            "line 3, column name: 'cam_1' is already on line 2",
        ),
        ('site,ward,room\n"st-marys,3B,3B-12\n', "unexpected end of data"),
    ],
)
def test_problems_name_line_and_column(text, message):
    with pytest.raises(RosterError) as caught:
        parse_roster(text, "ward.csv")
    assert message in str(caught.value) and str(caught.value).startswith("ward.csv: ")


def test_several_problems_are_reported_at_once_up_to_five():
    rows = "".join(f"st-marys,3B,bad room {i}\n" for i in range(8))
    with pytest.raises(RosterError) as caught:
        parse_roster("site,ward,room\n" + rows)
    text = str(caught.value)
    assert "line 2," in text and "line 6," in text and "line 7," not in text
    assert "and 3 more (nothing was created)" in text


def test_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(RosterError, match="cannot read"):
        read_roster(tmp_path / "missing.csv")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("site,ward,room\nst-marys,3B,Zimmer-\xe4\n".encode("latin-1"))
    with pytest.raises(RosterError, match="not UTF-8 text"):
        read_roster(latin)
