import gzip
import importlib.util
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from senland_geo.classes import IGNORE_INDEX, MTLCC, PASTIS
from senland_geo.cropdata import (
    MTLCC_URL,
    PASTIS_URL,
    MtlccDataset,
    PastisDataset,
    collate_series,
    iter_tfrecords,
    open_crop_dataset,
    parse_example,
    read_mtlcc_record,
)
from senland_geo.errors import UserError
from senland_geo.regions import MUNICH

DATA = Path(__file__).parent / "data"


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"make_{name}", DATA / name / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_pastis = load_script("pastis")
make_mtlcc = load_script("mtlcc")


@pytest.fixture(scope="module")
def pastis_dir(tmp_path_factory):
    return make_pastis.make(tmp_path_factory.mktemp("pastis") / "PASTIS")


@pytest.fixture(scope="module")
def mtlcc_dir(tmp_path_factory):
    return make_mtlcc.make(tmp_path_factory.mktemp("mtlcc") / "480")


def days(yyyymmdd):
    return np.array(
        [np.datetime64(f"{d // 10000}-{d // 100 % 100:02d}-{d % 100:02d}", "D") for d in yyyymmdd]
    ).astype(np.int64)


# ---- PASTIS ---------------------------------------------------------------------------------


def test_pastis_sample_shapes_values_and_classes(pastis_dir):
    import torchgeo.datasets

    ds = PastisDataset(pastis_dir)
    assert isinstance(ds._ds, torchgeo.datasets.PASTIS)  # read through torchgeo
    assert ds.ids == ["10000", "10001", "20000", "30000", "40000", "40001"]
    sample = ds[0]
    raw = np.load(pastis_dir / "DATA_S2" / "S2_10000.npy")
    assert raw.dtype == np.int16 and raw.shape == (7, 10, 128, 128)
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (7, 10, 128, 128)
    assert torch.equal(sample["image"], torch.from_numpy(raw.astype(np.float32)))
    assert sample["dates"].tolist() == days(make_pastis.PATCHES[0][3]).tolist()
    assert sample["date_mask"].dtype == torch.bool and bool(sample["date_mask"].all())
    mask = sample["mask"]
    assert mask.dtype == torch.int64 and mask.shape == (128, 128)
    target = np.load(pastis_dir / "ANNOTATIONS" / "TARGET_10000.npy")[0]
    assert set(np.unique(target).tolist()) == set(range(20))
    m = mask.numpy()
    assert (m[target == 0] == PASTIS.names.index("Background")).all()
    assert (m[target == 19] == IGNORE_INDEX).all()
    for label in range(1, 19):
        assert (m[target == label] == label - 1).all()
    assert PASTIS.names[int(m[target == 5][0])] == "Winter rapeseed"
    assert PASTIS.names[int(m[target == 0][0])] == "Background"


def test_pastis_folds_select_patches(pastis_dir):
    assert PastisDataset(pastis_dir, folds=[1]).ids == ["10000", "40001"]
    assert PastisDataset(pastis_dir, folds=[2, 3]).ids == ["10001", "20000"]
    assert len(PastisDataset(pastis_dir, folds=[1, 2, 3])) == 4
    with pytest.raises(ValueError, match="folds"):
        PastisDataset(pastis_dir, folds=[0])


def test_pastis_parent_folder_is_accepted(pastis_dir):
    assert PastisDataset(pastis_dir.parent, folds=[4]).ids == ["30000"]


def test_pastis_season_window(pastis_dir):
    ds = PastisDataset(pastis_dir, folds=[1], season=(1, 7))
    sample = ds[0]
    raw = np.load(pastis_dir / "DATA_S2" / "S2_10000.npy")
    assert sample["dates"].tolist() == days([20190115, 20190214, 20190320, 20190705]).tolist()
    assert torch.equal(sample["image"], torch.from_numpy(raw[[2, 3, 4, 5]].astype(np.float32)))


def test_pastis_monthly(pastis_dir):
    ds = PastisDataset(pastis_dir, folds=[1], temporal="monthly")
    sample = ds[0]  # 10000: Sep, Oct 2018; Jan, Feb, Mar, Jul, Aug 2019
    assert sample["image"].shape == (14, 10, 128, 128)  # 2018-09 .. 2019-10
    expect = [True, True, False, False, True, True, True, False, False, False, True, True,
              False, False]  # fmt: skip
    assert sample["date_mask"].tolist() == expect
    starts = sample["dates"].numpy().astype("datetime64[D]")
    assert str(starts[0]) == "2018-09-01" and str(starts[-1]) == "2019-10-01"
    raw = np.load(pastis_dir / "DATA_S2" / "S2_10000.npy").astype(np.float32)
    assert torch.equal(sample["image"][4], torch.from_numpy(raw[2]))  # Jan: one observation
    assert sample["image"][2].abs().sum() == 0  # Nov 2018: empty -> 0

    seasonal = PastisDataset(pastis_dir, folds=[1], temporal="monthly", season=(1, 7))[0]
    assert seasonal["image"].shape == (7, 10, 128, 128)
    assert seasonal["date_mask"].tolist() == [True, True, True, False, False, False, True]

    near = PastisDataset(pastis_dir, folds=[1], temporal="monthly", monthly_how="nearest")[0]
    # Nov 15 2018: nearest acquisition is Oct 29 2018 (index 1)
    assert torch.equal(near["image"][2], torch.from_numpy(raw[1]))


def test_pastis_pad_to_max_len(pastis_dir):
    sample = PastisDataset(pastis_dir, folds=[2], max_len=8)[0]  # 10001 has 5 dates
    assert sample["image"].shape == (8, 10, 128, 128)
    assert sample["date_mask"].tolist() == [True] * 5 + [False] * 3
    assert sample["dates"][5:].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="max_len=3"):
        PastisDataset(pastis_dir, folds=[2], max_len=3)[0]


def test_pastis_normalize_uses_selected_folds(pastis_dir):
    sample = PastisDataset(pastis_dir, folds=[1, 3], normalize=True)[0]
    raw = np.load(pastis_dir / "DATA_S2" / "S2_10000.npy").astype(np.float32)
    mean = np.array([2000.0 + b for b in range(10)], np.float32)  # mean of folds 1 and 3
    std = np.array([200.0 + 10 * b for b in range(1, 11)], np.float32)
    expect = (raw - mean[None, :, None, None]) / std[None, :, None, None]
    np.testing.assert_allclose(sample["image"].numpy(), expect, rtol=1e-6)


def test_pastis_dataloader_batches(pastis_dir):
    ds = PastisDataset(pastis_dir, folds=[1, 2, 3])  # T = 7, 5, 6, 6
    loader = DataLoader(ds, batch_size=3, collate_fn=collate_series)
    batch = next(iter(loader))
    assert batch["image"].shape == (3, 7, 10, 128, 128)
    assert batch["mask"].shape == (3, 128, 128) and batch["mask"].dtype == torch.int64
    assert batch["date_mask"].shape == (3, 7)
    assert batch["date_mask"].sum(dim=1).tolist() == [7, 5, 6]
    assert batch["id"] == ["10000", "10001", "20000"]


def test_pastis_missing_folder_names_path_and_url(tmp_path):
    where = tmp_path / "nothing-here"
    with pytest.raises(UserError) as err:
        PastisDataset(where)
    msg = str(err.value)
    assert str(where / "metadata.geojson") in msg
    assert PASTIS_URL in msg and "--data-dir" in msg


def test_pastis_incomplete_folder_names_missing_file(pastis_dir, tmp_path):
    copy = Path(shutil.copytree(pastis_dir, tmp_path / "PASTIS"))
    (copy / "DATA_S2" / "S2_20000.npy").unlink()
    with pytest.raises(UserError) as err:
        PastisDataset(copy)
    assert str(copy / "DATA_S2" / "S2_20000.npy") in str(err.value)
    assert PASTIS_URL in str(err.value)
    assert len(PastisDataset(copy, folds=[1])) == 2  # other folds still load


def test_pastis_normalize_without_norm_file(pastis_dir, tmp_path):
    copy = Path(shutil.copytree(pastis_dir, tmp_path / "PASTIS"))
    (copy / "NORM_S2_patch.json").unlink()
    with pytest.raises(UserError, match="NORM_S2_patch.json"):
        PastisDataset(copy, normalize=True)


# ---- TFRecord / protobuf -------------------------------------------------------------------


def test_parse_example_matches_protobuf_encoding():
    """Our decoder reads what the protobuf library itself serializes for tf.train.Example."""
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="ex.proto", package="tf", syntax="proto3")
    f = descriptor_pb2.FieldDescriptorProto
    rep = f.LABEL_REPEATED

    def msg(name, *fields):
        m = fdp.message_type.add(name=name)
        for fname, num, ftype, label, tname in fields:
            fld = m.field.add(name=fname, number=num, type=ftype, label=label)
            if tname:
                fld.type_name = tname
        return m

    msg("BytesList", ("value", 1, f.TYPE_BYTES, rep, None))
    msg("FloatList", ("value", 1, f.TYPE_FLOAT, rep, None))
    msg("Int64List", ("value", 1, f.TYPE_INT64, rep, None))
    feat = msg(
        "Feature",
        ("bytes_list", 1, f.TYPE_MESSAGE, f.LABEL_OPTIONAL, ".tf.BytesList"),
        ("float_list", 2, f.TYPE_MESSAGE, f.LABEL_OPTIONAL, ".tf.FloatList"),
        ("int64_list", 3, f.TYPE_MESSAGE, f.LABEL_OPTIONAL, ".tf.Int64List"),
    )
    feat.oneof_decl.add(name="kind")
    for fld in feat.field:
        fld.oneof_index = 0
    feats = msg("Features", ("feature", 1, f.TYPE_MESSAGE, rep, ".tf.Features.FeatureEntry"))
    entry = feats.nested_type.add(name="FeatureEntry")
    entry.field.add(name="key", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    entry.field.add(
        name="value", number=2, type=f.TYPE_MESSAGE, label=f.LABEL_OPTIONAL, type_name=".tf.Feature"
    )
    entry.options.map_entry = True
    msg("Example", ("features", 1, f.TYPE_MESSAGE, f.LABEL_OPTIONAL, ".tf.Features"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    Example = message_factory.GetMessageClass(pool.FindMessageTypeByName("tf.Example"))

    ex = Example()
    ex.features.feature["x10/data"].bytes_list.value.append(b"\x01\x02\x00")
    ex.features.feature["x10/shape"].int64_list.value.extend([2, 48, 48, -4, 2**40])
    ex.features.feature["weights"].float_list.value.extend([0.5, -1.25])
    ex.features.feature["empty"].int64_list.SetInParent()
    got = parse_example(ex.SerializeToString())
    assert got == {
        "x10/data": [b"\x01\x02\x00"],
        "x10/shape": [2, 48, 48, -4, 2**40],
        "weights": [0.5, -1.25],
        "empty": [],
    }
    # and the fixture writer's hand encoding reads back with protobuf itself
    raw = make_mtlcc.encode_example({"a": make_mtlcc._int64_feature([3, -1])})
    back = Example.FromString(raw)
    assert list(back.features.feature["a"].int64_list.value) == [3, -1]


def test_parse_example_unpacked_lists_and_garbage():
    unpacked_ints = make_mtlcc._len_field(3, b"\x08\x05\x08\x07")  # Int64List 5, 7
    unpacked_float = make_mtlcc._len_field(2, b"\x0d" + struct.pack("<f", 1.5))
    raw = make_mtlcc.encode_example({"i": unpacked_ints, "f": unpacked_float})
    assert parse_example(raw) == {"i": [5, 7], "f": [1.5]}
    with pytest.raises(ValueError, match="truncated"):
        parse_example(raw[:-3])


def test_mtlcc_corrupt_record_is_a_user_error(tmp_path):
    path = tmp_path / "9.tfrecord"
    path.write_bytes(make_mtlcc.tfrecord_frame(b"\x0a\x05\x0a"))
    with pytest.raises(UserError, match="not a valid tf.train.Example"):
        read_mtlcc_record(path)


def test_tfrecord_checksums(tmp_path):
    rec = make_mtlcc.encode_example({"k": make_mtlcc._bytes_feature(b"hello")})
    path = tmp_path / "one.tfrecord"
    path.write_bytes(make_mtlcc.tfrecord_frame(rec) * 2)
    assert list(iter_tfrecords(path, verify=True)) == [rec, rec]
    gz = tmp_path / "one.tfrecord.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert list(iter_tfrecords(gz, verify=True)) == [rec, rec]
    data = bytearray(make_mtlcc.tfrecord_frame(rec))
    data[14] ^= 0xFF  # a payload byte
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(bytes(data))
    assert len(list(iter_tfrecords(bad))) == 1  # data crc not checked by default
    with pytest.raises(UserError, match="bad data checksum"):
        list(iter_tfrecords(bad, verify=True))
    data = bytearray(make_mtlcc.tfrecord_frame(rec))
    data[0:8] = struct.pack("<Q", 99)
    bad.write_bytes(bytes(data))
    with pytest.raises(UserError, match="length checksum"):
        list(iter_tfrecords(bad))
    bad.write_bytes(make_mtlcc.tfrecord_frame(rec)[:-3])
    with pytest.raises(UserError, match="truncated"):
        list(iter_tfrecords(bad))


# ---- MTLCC ----------------------------------------------------------------------------------


def expected_mtlcc(year, tile):
    arr = make_mtlcc.tile_arrays(year, tile)
    n = len(make_mtlcc.DATES[(year, tile)])
    x10, x20, x60 = arr["x10"][:n], arr["x20"][:n], arr["x60"][:n]
    up20 = x20.repeat(2, axis=1).repeat(2, axis=2)
    up60 = x60.repeat(6, axis=1).repeat(6, axis=2)
    # B02 B03 B04 B08 from x10 (B04 B03 B02 B08); B10 from x60 (B01 B09 B10); B11 B12 from x20
    bands = [x10[..., 2], x10[..., 1], x10[..., 0], x10[..., 3], up60[..., 2], up20[..., 4],
             up20[..., 5]]  # fmt: skip
    return np.stack(bands, axis=1).astype(np.float32), arr


def test_mtlcc_sample_shapes_values_and_classes(mtlcc_dir):
    ds = MtlccDataset(mtlcc_dir)
    assert ds.bands == MUNICH.bands == ("B02", "B03", "B04", "B08", "B10", "B11", "B12")
    sample = ds[0]
    assert sample["id"] == "2016/1"
    image, arr = expected_mtlcc(2016, 1)
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (5, 7, 48, 48)
    assert torch.equal(sample["image"], torch.from_numpy(image))
    assert sample["dates"].numpy().astype("datetime64[D]").astype(str).tolist() == [
        "2016-01-03", "2016-02-12", "2016-04-20", "2016-06-01", "2016-08-09"]  # fmt: skip
    mask = sample["mask"].numpy()
    assert mask.dtype == np.int64 and mask.shape == (48, 48)
    raw = arr["labels"][0]
    for pos, raw_id in enumerate(make_mtlcc.RAW_CLASS_IDS):
        sel = raw == raw_id
        assert sel.any()
        expect = MTLCC.names.index("Background") if raw_id == 0 else pos - 1
        assert (mask[sel] == expect).all()
    assert MTLCC.names[int(mask[raw == 26][0])] == "Maize"
    assert MTLCC.names[int(mask[raw == 1][0])] == "Sugar beet"
    assert MTLCC.names[int(mask[raw == 23][0])] == "Winter barley"


def test_mtlcc_splits_and_years(mtlcc_dir):
    train = MtlccDataset(mtlcc_dir, split="train", fold=0)
    assert train.ids == ["2016/1", "2016/2", "2016/3", "2017/1", "2017/2"]  # 2017/3 missing
    assert MtlccDataset(mtlcc_dir, split="test").ids == ["2016/4", "2017/4"]
    assert MtlccDataset(mtlcc_dir, split="eval").ids == ["2016/5", "2017/5"]
    assert MtlccDataset(mtlcc_dir, years=[2017]).ids == ["2017/1", "2017/2"]
    assert MtlccDataset(mtlcc_dir.parent).ids == train.ids  # parent of 480/ works too


def test_mtlcc_year_taken_from_folder_when_stored_as_zero(mtlcc_dir):
    sample = MtlccDataset(mtlcc_dir, years=[2017])[1]
    assert sample["id"] == "2017/2"
    assert sample["dates"].numpy().astype("datetime64[D]").astype(str).tolist() == [
        "2017-02-01", "2017-04-04", "2017-06-06", "2017-08-08"]  # fmt: skip


def test_mtlcc_season_and_monthly(mtlcc_dir):
    image, _ = expected_mtlcc(2016, 1)
    sample = MtlccDataset(mtlcc_dir, season=(1, 7))[0]
    assert sample["image"].shape == (4, 7, 48, 48)  # Jan 3, Feb 12, Apr 20, Jun 1
    assert torch.equal(sample["image"], torch.from_numpy(image[:4]))
    monthly = MtlccDataset(mtlcc_dir, temporal="monthly")[0]
    assert monthly["image"].shape == (12, 7, 48, 48)
    assert monthly["date_mask"].tolist() == [True, True, False, True, False, True, False, True,
                                             False, False, False, False]  # fmt: skip
    assert torch.equal(monthly["image"][3], torch.from_numpy(image[2]))  # April
    both = MtlccDataset(mtlcc_dir, temporal="monthly", season=(1, 7))[0]
    assert both["image"].shape == (7, 7, 48, 48)


def test_mtlcc_dataloader_batches(mtlcc_dir):
    loader = DataLoader(MtlccDataset(mtlcc_dir), batch_size=2, collate_fn=MtlccDataset.collate_fn)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 5, 7, 48, 48)  # T = 5 and 4
    assert batch["mask"].shape == (2, 48, 48) and batch["mask"].dtype == torch.int64
    assert batch["date_mask"].tolist() == [[True] * 5, [True] * 4 + [False]]


def test_mtlcc_other_bands_and_bilinear(mtlcc_dir):
    path = mtlcc_dir / "data16" / "1.tfrecord.gz"
    rec = read_mtlcc_record(path, bands=["B01", "B8A"], upsample="bilinear")
    assert rec["image"].shape == (5, 2, 48, 48)
    assert rec["labels"].shape == (48, 48)
    with pytest.raises(ValueError, match="B13"):
        read_mtlcc_record(path, bands=["B13"])


def test_mtlcc_missing_folder_names_path_and_url(tmp_path):
    with pytest.raises(UserError) as err:
        MtlccDataset(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "tileids") in msg and MTLCC_URL in msg and "--data-dir" in msg


def test_mtlcc_without_tfrecords_or_split_file(mtlcc_dir, tmp_path):
    only_ids = tmp_path / "480"
    shutil.copytree(mtlcc_dir / "tileids", only_ids / "tileids")
    with pytest.raises(UserError) as err:
        MtlccDataset(only_ids)
    assert str(only_ids / "data16") in str(err.value) and MTLCC_URL in str(err.value)
    with pytest.raises(UserError, match="train_fold3.tileids"):
        MtlccDataset(mtlcc_dir, fold=3)


def test_open_crop_dataset(pastis_dir, mtlcc_dir):
    assert isinstance(open_crop_dataset("france-pastis", pastis_dir, folds=[5]), PastisDataset)
    assert isinstance(open_crop_dataset("munich", mtlcc_dir, split="eval"), MtlccDataset)
    with pytest.raises(UserError, match="dakar"):
        open_crop_dataset("dakar", pastis_dir)


def test_fixture_metadata_is_valid_geojson(pastis_dir):
    meta = json.loads((pastis_dir / "metadata.geojson").read_text())
    assert [f["properties"]["Fold"] for f in meta["features"]] == [1, 2, 3, 4, 5, 1]
