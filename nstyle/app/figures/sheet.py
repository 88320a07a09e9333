"""Contact sheets: labelled PIL images laid out in a grid, for the demo and for side-by-side comparisons.

``contact_sheet([(content, "content"), (style, "style"), (result, "result")])`` gives one row of three;
``columns=`` wraps a longer list into rows, and ``row_labels`` / ``col_labels`` put headers on the left
and on top (for parameter sweeps: one row per style weight, one column per layer set, say). Every image
is scaled to fit its cell (``cell_size``: a square side, or a (width, height) box), keeping its aspect
ratio, and centred in it.
"""
from PIL import Image, ImageDraw, ImageFont

__all__ = ["contact_sheet", "layout_sheet", "label_font"]


def label_font(size):
    """A font for labels: Pillow's built-in scalable font where available, else its bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the fixed-size bitmap font
        return ImageFont.load_default()


def _text_size(draw, text, font):
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _fit_text(draw, text, font, width):
    """``text`` shortened with an ellipsis until it fits ``width`` pixels."""
    if _text_size(draw, text, font)[0] <= width:
        return text
    while len(text) > 1 and _text_size(draw, text + "...", font)[0] > width:
        text = text[:-1]
    return text + "..."


def _fit_image(img, cell_w, cell_h):
    """``img`` as RGB, scaled (down or up) to the largest size that fits a cell_w x cell_h box."""
    img = img.convert("RGB")
    scale = min(cell_w / img.width, cell_h / img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    if size == img.size:
        return img
    # Nearest-neighbour when enlarging a lot keeps small results crisp (a 64 px test image stays blocky,
    # not blurred); Lanczos otherwise.
    resample = Image.Resampling.NEAREST if scale >= 3 else Image.Resampling.LANCZOS
    return img.resize(size, resample)


def contact_sheet(cells, columns=None, cell_size=256, row_labels=None, col_labels=None, pad=8,
                  font_size=None, background=(255, 255, 255), text_color=(20, 20, 20)):
    """Lay out images in a grid with a label under each; returns an RGB PIL image.

    cells: list whose items are a PIL image, an ``(image, label)`` pair, or None (an empty cell).
    columns: cells per row (default: all in one row). cell_size: the box each image is fitted to, an int
    (a square) or (width, height).
    row_labels / col_labels: optional headers, one per row / column, drawn left of / above the grid.
    pad: pixels between cells and around the sheet. font_size: label height (default cell_size / 14).
    """
    cells = [c if c is None or isinstance(c, tuple) else (c, None) for c in cells]
    if not cells:
        raise ValueError("contact_sheet needs at least one cell")
    columns = len(cells) if columns is None else max(1, int(columns))
    rows = (len(cells) + columns - 1) // columns
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"{len(row_labels)} row labels for {rows} rows")
    if col_labels is not None and len(col_labels) != columns:
        raise ValueError(f"{len(col_labels)} column labels for {columns} columns")
    cell_w, cell_h = (int(cell_size), int(cell_size)) if isinstance(cell_size, (int, float)) else map(int, cell_size)
    font = label_font(font_size or max(10, min(cell_w, cell_h) // 14))
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = _text_size(scratch, "Ag", font)[1] + pad // 2
    has_cell_labels = any(c is not None and c[1] for c in cells)
    label_h = line_h if has_cell_labels else 0
    left = 0
    if row_labels is not None:
        left = min(cell_w, max(_text_size(scratch, str(t), font)[0] for t in row_labels)) + pad
    top = line_h + pad // 2 if col_labels is not None else 0
    step_x, step_y = cell_w + pad, cell_h + label_h + pad
    sheet = Image.new("RGB", (pad + left + columns * step_x, pad + top + rows * step_y), background)
    draw = ImageDraw.Draw(sheet)
    for j, text in enumerate(col_labels or ()):
        text = _fit_text(draw, str(text), font, cell_w)
        x = pad + left + j * step_x + (cell_w - _text_size(draw, text, font)[0]) // 2
        draw.text((x, pad), text, fill=text_color, font=font)
    for i, text in enumerate(row_labels or ()):
        text = _fit_text(draw, str(text), font, left - pad)
        y = pad + top + i * step_y + (cell_h - _text_size(draw, text, font)[1]) // 2
        draw.text((pad, y), text, fill=text_color, font=font)
    for k, cell in enumerate(cells):
        if cell is None:
            continue
        img, label = cell
        x0 = pad + left + (k % columns) * step_x
        y0 = pad + top + (k // columns) * step_y
        fitted = _fit_image(img, cell_w, cell_h)
        sheet.paste(fitted, (x0 + (cell_w - fitted.width) // 2, y0 + (cell_h - fitted.height) // 2))
        if label:
            text = _fit_text(draw, str(label), font, cell_w)
            x = x0 + (cell_w - _text_size(draw, text, font)[0]) // 2
            draw.text((x, y0 + cell_h + pad // 4), text, fill=text_color, font=font)
    return sheet


# ---------------------------------------------------------------------------------------------------
# Cells at their own size, with multi-line labels, captions and grey placeholders (reconstruct, grid).

def _multiline_size(draw, text, font):
    if not text:
        return 0, 0
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font, spacing=2)
    return right - min(left, 0), bottom - min(top, 0)


def layout_sheet(rows, row_labels=None, col_labels=None, captions=None, title=None, pad=6, font_size=12,
                 background=(255, 255, 255), ink=(0, 0, 0), empty=(220, 220, 220)):
    """Lay cells out in a labelled grid.

    rows: list of rows, each a list of PIL images (or None for a cell not made yet, drawn as a grey
    box); every cell gets the size of the largest one (smaller ones are centred). row_labels: one
    (possibly multi-line) string per row, drawn left of it; col_labels: one per column, drawn above;
    captions: like rows, one string (or None) per cell, drawn under it; title: one line on top.
    Returns (sheet, boxes): the RGB sheet and ``boxes[r][c] = (left, top, right, bottom)``, where each
    cell lies. A column is widened to its label or caption when that is wider than the cells.
    """
    n_rows = len(rows)
    n_cols = max((len(r) for r in rows), default=0)
    if n_rows == 0 or n_cols == 0:
        raise ValueError("a sheet needs at least one cell")
    if row_labels is not None and len(row_labels) != n_rows:
        raise ValueError(f"{len(row_labels)} row labels for {n_rows} rows")
    if col_labels is not None and len(col_labels) != n_cols:
        raise ValueError(f"{len(col_labels)} column labels for {n_cols} columns")
    cells = [c for r in rows for c in r if c is not None]
    cell_w = max((c.width for c in cells), default=64)
    cell_h = max((c.height for c in cells), default=64)

    font = label_font(font_size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max((_multiline_size(measure, t, font)[0] for t in row_labels or ()), default=0)
    label_h = max((_multiline_size(measure, t, font)[1] for t in col_labels or ()), default=0)
    # a column is as wide as its widest label, so labels never run into their neighbours
    caption_texts = [t for r in captions or () for t in r if t]
    col_w = max([cell_w] + [_multiline_size(measure, t, font)[0] for t in list(col_labels or ()) + caption_texts])
    caption_h = max((_multiline_size(measure, t, font)[1] + 2 for t in caption_texts), default=0)
    row_h = cell_h + caption_h
    title_h = _multiline_size(measure, title, font)[1] if title else 0
    left0 = pad + (label_w + pad if label_w else 0)
    top0 = pad + (title_h + pad if title_h else 0) + (label_h + pad if label_h else 0)
    width = left0 + n_cols * (col_w + pad)
    height = top0 + n_rows * (row_h + pad)
    if title:
        width = max(width, 2 * pad + _multiline_size(measure, title, font)[0])

    sheet = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), title, fill=ink, font=font)
    boxes = []
    for r, row in enumerate(rows):
        top = top0 + r * (row_h + pad)
        if row_labels:
            tw, th = _multiline_size(draw, row_labels[r], font)
            draw.multiline_text((pad, top + (cell_h - th) // 2), row_labels[r], fill=ink, font=font, spacing=2)
        row_boxes = []
        for c in range(n_cols):
            left = left0 + c * (col_w + pad) + (col_w - cell_w) // 2
            box = (left, top, left + cell_w, top + cell_h)
            cell = row[c] if c < len(row) else None
            if cell is None:
                draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=empty)
            else:
                sheet.paste(cell.convert("RGB"), (left + (cell_w - cell.width) // 2, top + (cell_h - cell.height) // 2))
            text = captions[r][c] if captions and r < len(captions) and c < len(captions[r]) else None
            if text:
                tw, _ = _multiline_size(draw, text, font)
                draw.text((left0 + c * (col_w + pad) + (col_w - tw) // 2, top + cell_h + 2), text, fill=ink, font=font)
            row_boxes.append(box)
        boxes.append(row_boxes)
    if col_labels:
        label_top = top0 - pad - label_h
        for c, text in enumerate(col_labels):
            tw, _ = _multiline_size(draw, text, font)
            left = left0 + c * (col_w + pad)
            draw.multiline_text((left + (col_w - tw) // 2, label_top), text, fill=ink, font=font,
                                spacing=2, align="center")
    return sheet, boxes
