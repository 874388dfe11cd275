import re
import zlib

import cv2
import numpy as np

from provisioning import labels
from provisioning.roster import Device

DEVICE = Device(2, "st-marys", "3B", "3B-12", "cam-3b12", ("window",))


def test_the_qr_code_says_where_the_device_goes_and_which_bundle_it_carries():
    label = labels.Label(DEVICE, "0123456789ab")
    assert label.payload == "wardsight:device?v=1&site=st-marys&ward=3B&room=3B-12&name=cam-3b12&bundle=0123456789ab"
    nameless = labels.Label(Device(3, "st-marys", "3B", "3B-14"), "ba9876543210")
    assert "name=" not in nameless.payload and nameless.payload.endswith("room=3B-14&bundle=ba9876543210")


def test_every_label_on_a_page_scans_even_with_the_longest_names():
    longest = "x" * 64
    devices = [DEVICE, Device(3, longest, longest, longest, longest, tuple(f"t{i}" for i in range(16)))]
    page = labels.render_pages([labels.Label(d, "0123456789ab") for d in devices], "ward 3B")[0]
    assert page.shape == (labels.PAGE[1], labels.PAGE[0])
    (x, y), (w, h) = labels.ORIGIN, labels.LABEL
    for index, device in enumerate(devices):
        tile = page[y : y + h, x + index * labels.PITCH[0] : x + index * labels.PITCH[0] + w]
        text, _, _ = cv2.QRCodeDetector().detectAndDecode(tile)
        assert f"room={device.room}" in text and text.endswith("bundle=0123456789ab")


def test_more_than_a_sheet_makes_numbered_pages(tmp_path):
    devices = [Device(i, "s", "w", f"r{i}") for i in range(2, 25)]
    pages = labels.render_pages([labels.Label(d, "0123456789ab") for d in devices], "ward")
    assert len(pages) == 2
    paths = labels.write_pngs(pages, tmp_path / "labels")
    assert [p.name for p in paths] == ["labels-1.png", "labels-2.png"]
    assert np.array_equal(cv2.imread(str(paths[1]), cv2.IMREAD_GRAYSCALE), pages[1])
    one = labels.write_pngs(pages[:1], tmp_path / "single")
    assert [p.name for p in one] == ["single.png"]


def test_the_pdf_holds_each_page_as_an_image_at_300_dpi_with_a_correct_cross_reference_table():
    pages = [np.full((3508, 2480), 255, np.uint8), np.zeros((3508, 2480), np.uint8)]
    pages[0][100:200, 100:200] = 0
    pdf = labels.pdf_bytes(pages)
    start = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    assert pdf[start:].startswith(b"xref\n0 9\n")
    offsets = [int(line[:10]) for line in pdf[start:].split(b"\n")[3:11]]
    for number, offset in enumerate(offsets, 1):
        assert pdf[offset:].startswith(f"{number} 0 obj\n".encode())
    assert b"/Count 2" in pdf and pdf.count(b"/MediaBox [0 0 595.20 841.92]") == 2
    streams = re.findall(rb"/Length (\d+) >>\nstream\n", pdf)
    images = [m.end() for m in re.finditer(rb"/FlateDecode /Length \d+ >>\nstream\n", pdf)]
    assert len(streams) == 4 and len(images) == 2
    first = pdf[images[0] : images[0] + int(re.search(rb"/FlateDecode /Length (\d+)", pdf)[1])]
    assert zlib.decompress(first) == pages[0].tobytes()
