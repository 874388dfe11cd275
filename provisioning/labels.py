"""The installer's sheet of labels: one per device, a QR code and the room in words, for A4 label sheets of 3 x 7
(63.5 x 38.1 mm, e.g. Avery L7160) printed at 100 %.

The QR code says which device goes where and which bundle it carries, never the token:
``wardsight:device?v=1&site=S&ward=W&room=R[&name=N]&bundle=ID`` where ``ID`` is the enrollment token's public id
(the part of ``wst.<id>.<secret>`` that ``wardsight fleet token revoke`` and the console show). A lost label
lets nobody enroll; the secret is only in the bundle file, which goes onto the device's card.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import cv2
import numpy as np

from provisioning.roster import Device

DPI = 300
PAGE = (2480, 3508)  # A4 at 300 dpi, width x height
LABEL = (750, 450)  # 63.5 x 38.1 mm
PITCH = (780, 450)  # 66.04 mm across, 38.1 mm down
ORIGIN = (86, 179)  # 7.25 mm, 15.15 mm
GRID = (3, 7)
FONT = cv2.FONT_HERSHEY_SIMPLEX
QR_SIDE = 390


@dataclass(frozen=True)
class Label:
    device: Device
    bundle_id: str  # the token's public id

    @property
    def payload(self) -> str:
        fields = [("v", "1"), ("site", self.device.site), ("ward", self.device.ward), ("room", self.device.room)]
        if self.device.name:
            fields.append(("name", self.device.name))
        fields.append(("bundle", self.bundle_id))
        return "wardsight:device?" + urlencode(fields)

    def lines(self) -> list[tuple[str, float, int]]:
        """(text, font scale, thickness), largest first."""
        device = self.device
        lines = [(device.room, 1.6, 4)]
        if device.name:
            lines.append((device.name, 1.0, 2))
        lines.append((f"{device.site} / {device.ward}", 0.8, 2))
        if device.tags:
            lines.append((" ".join(device.tags), 0.7, 1))
        lines.append((f"bundle {self.bundle_id}", 0.7, 1))
        return lines


def qr_matrix(text: str, side: int) -> np.ndarray:
    """The QR code of ``text`` (4-module quiet zone), black on white, as large as fits in ``side`` pixels."""
    import segno  # here: only labels need it

    code = segno.make(text, error="m", micro=False)
    modules = np.array([list(row) for row in code.matrix], dtype=np.uint8)
    modules = np.pad(modules, 4)
    scale = side // modules.shape[0]
    if scale < 3:
        raise ValueError(f"QR code of {len(text)} characters does not fit in {side} pixels")
    return np.kron(255 - modules * 255, np.ones((scale, scale), dtype=np.uint8)).astype(np.uint8)


def _width(text: str, scale: float, thickness: int) -> int:
    return int(cv2.getTextSize(text, FONT, scale, thickness)[0][0])


def _fit(text: str, scale: float, thickness: int, width: int) -> tuple[str, float]:
    """``text`` shrunk (to 60 %) and then cut (with "..") until it is at most ``width`` pixels wide."""
    for step in (1.0, 0.9, 0.8, 0.7, 0.6):
        if _width(text, scale * step, thickness) <= width:
            return text, scale * step
    scale *= 0.6
    while len(text) > 1 and _width(text + "..", scale, thickness) > width:
        text = text[:-1]
    return text + "..", scale


def _wrap(text: str, scale: float, thickness: int, width: int) -> list[tuple[str, float]]:
    """One line shrunk to at most 80 %, else two lines at 80 % (the second cut if need be)."""
    shown, fitted = _fit(text, scale, thickness, width)
    if fitted >= scale * 0.8 - 1e-9 and shown == text:
        return [(shown, fitted)]
    scale *= 0.8
    cut = len(text)
    while cut > 1 and _width(text[:cut], scale, thickness) > width:
        cut -= 1
    rest, rest_scale = _fit(text[cut:], scale, thickness, width)
    return [(text[:cut], scale), (rest, rest_scale)]


def draw_label(label: Label) -> np.ndarray:
    width, height = LABEL
    tile = np.full((height, width), 255, dtype=np.uint8)
    qr = qr_matrix(label.payload, QR_SIDE)
    top = (height - qr.shape[0]) // 2
    tile[top : top + qr.shape[0], 20 : 20 + qr.shape[1]] = qr
    x, y = 20 + qr.shape[1] + 10, 30
    room = width - x - 15
    for text, scale, thickness in label.lines():
        for shown, fitted in _wrap(text, scale, thickness, room):
            y += int(30 * fitted) + 12
            cv2.putText(tile, shown, (x, y), FONT, fitted, 0, thickness, cv2.LINE_AA)
        y += 16
    cv2.rectangle(tile, (0, 0), (width - 1, height - 1), 210, 1)  # a faint cutting guide
    return tile


def render_pages(labels: list[Label], title: str) -> list[np.ndarray]:
    """Grayscale A4 pages at 300 dpi, 21 labels a page, a title line in the top margin."""
    per_page = GRID[0] * GRID[1]
    chunks = [labels[i : i + per_page] for i in range(0, len(labels), per_page)] or [[]]
    pages = []
    for number, chunk in enumerate(chunks, 1):
        page = np.full((PAGE[1], PAGE[0]), 255, dtype=np.uint8)
        heading, scale = _fit(f"{title}   page {number}/{len(chunks)}", 1.2, 2, PAGE[0] - 2 * ORIGIN[0])
        cv2.putText(page, heading, (ORIGIN[0], ORIGIN[1] - 70), FONT, scale, 0, 2, cv2.LINE_AA)
        for index, label in enumerate(chunk):
            column, row = index % GRID[0], index // GRID[0]
            left, top = ORIGIN[0] + column * PITCH[0], ORIGIN[1] + row * PITCH[1]
            page[top : top + LABEL[1], left : left + LABEL[0]] = draw_label(label)
        pages.append(page)
    return pages


def write_pngs(pages: list[np.ndarray], stem: Path) -> list[Path]:
    """``stem.png`` for one page, else ``stem-1.png``, ``stem-2.png``, ..."""
    paths = [stem.with_name(f"{stem.name}.png")] if len(pages) == 1 else []
    paths = paths or [stem.with_name(f"{stem.name}-{n}.png") for n in range(1, len(pages) + 1)]
    for page, path in zip(pages, paths, strict=True):
        ok, encoded = cv2.imencode(".png", page, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok:
            raise OSError(f"cannot encode {path}")
        path.write_bytes(encoded.tobytes())
    return paths


def pdf_bytes(pages: list[np.ndarray], dpi: int = DPI) -> bytes:
    """A PDF with each page as one grayscale image filling the page (sized so that 100 % prints at ``dpi``)."""
    count = len(pages)
    kids = " ".join(f"{3 + 3 * i} 0 R" for i in range(count))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode()]
    for i, page in enumerate(pages):
        height, width = page.shape
        w_pt, h_pt = width * 72 / dpi, height * 72 / dpi
        content_obj, image_obj = 4 + 3 * i, 5 + 3 * i  # the page itself is object 3 + 3 * i
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w_pt:.2f} {h_pt:.2f}] /Contents {content_obj} 0 R"
            f" /Resources << /XObject << /Im0 {image_obj} 0 R >> >> >>".encode()
        )
        content = f"q {w_pt:.2f} 0 0 {h_pt:.2f} 0 0 cm /Im0 Do Q".encode()
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        data = zlib.compress(np.ascontiguousarray(page, dtype=np.uint8).tobytes(), 9)
        head = (
            f"<< /Type /XObject /Subtype /Image /Width {width} /Height {height} /ColorSpace /DeviceGray"
            f" /BitsPerComponent 8 /Filter /FlateDecode /Length {len(data)} >>\nstream\n"
        )
        objects.append(head.encode() + data + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
