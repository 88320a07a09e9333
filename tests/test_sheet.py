"""Contact sheets: geometry, where each image lands, labels drawn, bad arguments refused."""
import numpy as np
import pytest
from PIL import Image

from nstyle.app.figures.sheet import contact_sheet


def solid(colour, size=(40, 20)):
    return Image.new("RGB", size, colour)


def test_one_row_places_each_image_centred_in_its_cell():
    cells = [(solid((255, 0, 0)), "content"), (solid((0, 255, 0), (20, 40)), "style"), (solid((0, 0, 255)), "result")]
    sheet = contact_sheet(cells, cell_size=64, pad=8)
    arr = np.asarray(sheet)
    assert sheet.mode == "RGB"
    assert sheet.width == 8 + 3 * (64 + 8), sheet.size
    # cell k starts at x = 8 + k*72; a 40x20 image fitted to 64 is 64x32, centred vertically (y 16..48)
    assert tuple(arr[8 + 32, 8 + 32]) == (255, 0, 0)
    assert tuple(arr[8 + 2, 8 + 32]) == (255, 255, 255), "above a wide image the cell stays background"
    assert tuple(arr[8 + 32, 8 + 72 + 32]) == (0, 255, 0)
    assert tuple(arr[8 + 32, 8 + 72 + 2]) == (255, 255, 255), "beside a tall image the cell stays background"
    assert tuple(arr[8 + 32, 8 + 144 + 32]) == (0, 0, 255)
    label_band = arr[8 + 64:, :]
    assert (label_band.sum(axis=2) < 300).any(), "labels must draw dark text under the cells"


def test_columns_wrap_and_headers_add_room():
    cells = [solid((i * 40, 0, 0)) for i in range(5)] + [None]
    plain = contact_sheet(cells, columns=3, cell_size=32, pad=4)
    assert plain.size == (4 + 3 * 36, 4 + 2 * 36), "no labels: no label band"
    headed = contact_sheet(cells, columns=3, cell_size=32, pad=4, row_labels=["a=1", "a=2"],
                           col_labels=["x", "y", "z"])
    assert headed.width > plain.width and headed.height > plain.height
    arr = np.asarray(plain)
    assert tuple(arr[4 + 36 + 16, 4 + 2 * 36 + 16]) == (255, 255, 255), "a None cell stays empty"


@pytest.mark.parametrize("kwargs", [{"row_labels": ["only one"]}, {"col_labels": ["a"]}])
def test_header_counts_must_match(kwargs):
    with pytest.raises(ValueError):
        contact_sheet([solid((0, 0, 0))] * 4, columns=2, **kwargs)


def test_long_labels_are_shortened_to_the_cell():
    sheet = contact_sheet([(solid((0, 0, 0)), "a very long label " * 10)], cell_size=48, pad=4)
    assert sheet.width == 4 + 48 + 4


def test_rectangular_cells_fit_wide_images_without_margins():
    sheet = contact_sheet([solid((255, 0, 0), (60, 30)), solid((0, 0, 255), (60, 30))], cell_size=(60, 30), pad=2)
    assert sheet.size == (2 + 2 * 62, 2 + 32)
    arr = np.asarray(sheet)
    assert (arr[2:32, 2:62] == (255, 0, 0)).all() and (arr[2:32, 64:124] == (0, 0, 255)).all()
