"""core.images: every awkward file a person can upload, generated here with PIL."""
import io

import numpy as np
import pytest
from PIL import Image

from core import images
from core.errors import InputError


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_plain_rgb_jpeg_comes_back_unchanged_in_size_and_without_notes():
    decoded = images.decode(encode(Image.new("RGB", (64, 48), (10, 20, 30)), "JPEG"), "plain.jpg")
    assert (decoded.image.mode, decoded.image.size, decoded.original_size, decoded.notes) == ("RGB", (64, 48), (64, 48), ())


@pytest.mark.parametrize("data, message", [
    (b"", r"empty \(0 bytes\)"),
    (b"name,label\ncat,1\n", "not an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image"),
])
def test_unreadable_files_are_refused_with_a_clear_message(data, message):
    with pytest.raises(InputError, match=message):
        images.open_image(data, "upload.bin")


def test_truncated_jpeg_is_refused():
    noise = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "JPEG")
    with pytest.raises(InputError, match="truncated"):
        images.open_image(data[: len(data) // 2], "cut.jpg")


@pytest.mark.parametrize("side", [9_000, 14_000])  # 81 MP (PIL would decode it), 196 MP (PIL refuses it)
def test_decompression_bomb_is_refused_before_decoding(side):
    data = encode(Image.new("1", (side, side)), "PNG")  # a tiny file that declares a huge image
    assert len(data) < 1_000_000
    with pytest.raises(InputError, match="megapixels"):
        images.open_image(data, "bomb.png")


def test_very_elongated_image_is_refused():
    with pytest.raises(InputError, match="elongated"):
        images.open_image(encode(Image.new("RGB", (2000, 20)), "PNG"), "strip.png")


def test_large_photo_is_downscaled_to_max_side():
    decoded = images.decode(encode(Image.new("RGB", (4000, 3000), (200, 100, 50)), "JPEG"), "big.jpg")
    assert decoded.original_size == (4000, 3000)
    assert decoded.image.size == (1024, 768)
    assert "downscaled to 1024x768" in decoded.notes[0]
    assert images.open_image(encode(Image.new("RGB", (4000, 3000)), "PNG"), max_side=256).size == (256, 192)


def test_cmyk_is_converted_to_rgb():
    decoded = images.decode(encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG"), "print.jpg")
    assert decoded.image.mode == "RGB"
    red, green, blue = decoded.image.getpixel((16, 16))
    assert red > 200 and green < 60 and blue < 60
    assert "CMYK" in decoded.notes[0]


def test_16_bit_grey_is_scaled_to_8_bit():
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    source = Image.fromarray(ramp)
    assert source.mode == "I;16"
    decoded = images.decode(encode(source, "PNG"), "scan.png")
    pixels = np.asarray(decoded.image)
    assert decoded.image.mode == "RGB"
    assert (pixels[0, 0, 0], pixels[0, -1, 0]) == (0, 255)
    assert "8-bit" in decoded.notes[0]


def test_alpha_is_composited_on_white():
    source = Image.new("RGBA", (20, 10), (255, 0, 0, 255))
    source.paste((0, 0, 255, 0), (10, 0, 20, 10))  # right half fully transparent
    decoded = images.decode(encode(source, "PNG"), "logo.png")
    assert decoded.image.getpixel((2, 5)) == (255, 0, 0)
    assert decoded.image.getpixel((15, 5)) == (255, 255, 255)
    assert "transparent" in decoded.notes[0]


def test_palette_with_transparency_is_composited_on_white():
    source = Image.new("P", (8, 8), 1)
    source.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    decoded = images.decode(encode(source, "PNG", transparency=1), "sprite.png")
    assert decoded.image.getpixel((4, 4)) == (255, 255, 255)


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (40, 30), colour) for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    decoded = images.decode(data, "anim.gif")
    red, green, blue = decoded.image.getpixel((20, 15))
    assert red > 200 and green < 50 and blue < 50
    assert "3 frames" in decoded.notes[0]


def test_exif_rotated_jpeg_is_turned_upright():
    source = Image.new("RGB", (60, 30), (0, 0, 255))
    source.paste((255, 0, 0), (0, 0, 10, 30))  # red band on the left as stored
    exif = source.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    decoded = images.decode(encode(source, "JPEG", exif=exif.tobytes()), "phone.jpg")
    assert decoded.image.size == (30, 60)
    red, _, blue = decoded.image.getpixel((15, 3))  # the left band is now on top
    assert red > 200 and blue < 60
    assert "EXIF" in decoded.notes[0]


def test_many_files_keep_the_good_ones_and_report_the_rest():
    good = encode(Image.new("RGB", (16, 16)), "PNG")
    files = [("empty.png", b""), ("notes.txt", b"hello")] + [(f"img{i}.png", good) for i in range(images.MAX_IMAGES + 3)]
    batch = images.decode_many(files)
    assert len(batch.images) == images.MAX_IMAGES - 2
    assert f"only the first {images.MAX_IMAGES}" in batch.problems[0] and "img15.png" in batch.problems[0]
    assert "empty (0 bytes)" in batch.problems[1] and "not an image" in batch.problems[2]


def test_bundled_samples_decode_and_stay_small():
    samples = images.sample_images()
    assert {"cat", "coffee", "drawing"} <= set(samples)
    licences = (images.SAMPLES / "LICENSES.md").read_text()
    for name, path in samples.items():
        assert path.stat().st_size < 300_000
        assert path.name in licences
        assert images.open_image(path.read_bytes(), path.name).mode == "RGB"


def test_memo_reuses_earlier_results_and_forgets_files_no_longer_given():
    one, two = encode(Image.new("RGB", (16, 16), (255, 0, 0)), "PNG"), encode(Image.new("RGB", (8, 8)), "PNG")
    memo: dict = {}
    first = images.decode_many([("one.png", one), ("two.png", two), ("bad.txt", b"x")], memo=memo)
    assert len(memo) == 3
    second = images.decode_many([("one.png", one), ("bad.txt", b"x")], memo=memo)
    assert second.images[0] is first.images[0] and second.problems == first.problems
    assert len(memo) == 2
