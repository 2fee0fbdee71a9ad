"""BIS ASCII parser: the real captures in ../shared/data/bis, and one synthetic case per fault."""

from __future__ import annotations

from datetime import datetime

import pytest

from surgbox_ext.bis.parser import (
    MAX_TOKEN_CHARS,
    BISParser,
    Header,
    canonical_name,
    parse_bytes,
    parse_file,
)

LIVE1 = "COM1_02.07.2015_10.11.41.txt"
LIVE2 = "COM1_02.07.2015_12.11.29.txt"
HISTORY = "bis_history_head200.txt"

GLOBALS = "|       10|      27|On      |None    |Off     |Off     |Yes     |"


def block(sr="0.0", sef="10.1", bisbit="0000", bis="36.2", totpow="60.9", emg="26.9", sqi="100.0", imp="10", artf="00000000"):
    return "|".join(f"{v:>8}" for v in (sr, sef, bisbit, bis, totpow, emg, sqi, imp)) + f"|{artf}|"


def record(when="07/03/2015 13:39:45", ch1=None, ch2=None, ch12=None) -> bytes:
    ch1 = ch1 or {}
    ch2 = ch2 or {"bis": "32.8", "imp": "7"}
    ch12 = ch12 or {"imp": "0"}
    return (when + GLOBALS + block(**ch1) + block(**ch2) + block(**ch12) + "\r\n").encode()


# -- real captures ---------------------------------------------------------------------------------


def test_live_capture_with_split_fields_and_garbage(shared_dir):
    records, parser = parse_file(shared_dir / "data" / "bis" / LIVE1)
    times = [r.device_time for r in records]
    assert times == [datetime(2015, 7, 2, 10, 27, s) for s in (24, 29, 34, 39, 44, 49, 54)]
    s = parser.stats
    # the logger's first, garbled record ("0_\x02\x02...") and the trailing Slovenian message are skipped
    assert s.records == 7 and s.skipped_bytes > 100 and s.corrupt_records == 0
    r = records[0]
    assert r.values == {"DSC": 10, "PIC": 0}
    assert r.settings == {"Filters": "On", "Alarm": "None", "Lo-Limit": "Off", "Hi-Limit": "Off", "Silence": "No"}
    # 10:27:24 ch1 EMGLOW is "    2\n6.5" in the file: a field split by a stray line break
    assert r.channels["1"] == {"SR": 0.0, "SEF": 30.0, "BISBIT": 0, "BIS": 0.0, "TOTPOW": 0.0, "EMGLOW": 26.5, "SQI": 0.0, "IMPEDNCE": 67, "ARTF2": 0x2000}
    assert r.channels["2"]["SEF"] == 0.3 and r.channels["2"]["IMPEDNCE"] == 1000 and r.channels["2"]["ARTF2"] == 0x9010
    assert r.channels["12"]["IMPEDNCE"] == 0
    # 10:27:34: ch1 ARTF2 is "020080\n88" and ch12 SR is "    25\n.0"
    r = records[2]
    assert r.channels["1"]["ARTF2"] == 0x02008088 and r.channels["1"]["IMPEDNCE"] == 1000 and r.channels["1"]["EMGLOW"] == 55.0
    assert r.channels["2"]["ARTF2"] == 0x02009000
    assert r.channels["12"]["SR"] == 25.0 and r.channels["12"]["ARTF2"] == 0x02008088
    # 10:27:39: PIC is "    \n   0", ch1 IMPEDNCE "      68\n", ch2 EMGLOW "    5\n5.0"
    r = records[3]
    assert r.values["PIC"] == 0 and r.channels["1"]["IMPEDNCE"] == 68 and r.channels["2"]["EMGLOW"] == 55.0
    assert r.channels["2"]["SEF"] == 1.1
    # 10:27:54: ch1 SEF "    3\n0.0", ARTF2 "020\n02080"
    r = records[6]
    assert r.channels["1"]["SR"] == 50.0 and r.channels["1"]["SEF"] == 30.0 and r.channels["1"]["ARTF2"] == 0x02002080
    assert r.channels["1"]["EMGLOW"] == 40.9 and r.channels["2"]["SEF"] == 0.4


def test_live_capture_with_nul_bytes_and_lost_leading_digit(shared_dir):
    records, parser = parse_file(shared_dir / "data" / "bis" / LIVE2)
    assert [r.device_time for r in records] == [datetime(2015, 7, 2, 12, 27, s) for s in (16, 21, 26, 31, 36)]
    s = parser.stats
    assert s.nul_bytes == 5 and s.repaired_times == 5  # every "07/02/2015" arrived as "7/02/2015"
    assert records[0].channels["1"]["EMGLOW"] == 32.6 and records[0].channels["1"]["ARTF2"] == 0x2008
    assert records[1].channels["12"]["EMGLOW"] == 32.9
    # 12:27:26: ch1 SEF is "   \r\n30.0"
    assert records[2].channels["1"]["SEF"] == 30.0 and records[2].channels["1"]["EMGLOW"] == 32.5
    assert records[4].channels["2"]["ARTF2"] == 0x9018


def test_history_export_255_is_missing(shared_dir):
    records, parser = parse_file(shared_dir / "data" / "bis" / HISTORY)
    assert parser.header.kind == "bis-history" and parser.header.system == "VISTA 3.22"
    assert len(records) == 198 and parser.stats.skipped_bytes == 0
    first = records[0]
    assert first.kind == "bis-history" and first.device_time == datetime(2013, 11, 5, 17, 34)
    assert first.values["AVGBIS"] is None and first.values["MINBIS"] is None and first.values["AVGSR"] is None
    assert first.values["AVGSQI"] == 0.0 and first.values["AVGEMG"] == 30.0 and first.values["AVGIMPD1"] == 1.4
    assert first.values["AVGIMPD2"] is None and first.values["BISBITS"] == 0x48 and first.values["SENSOR"] == 27
    second = records[1].values
    assert (second["AVGBIS"], second["MINBIS"], second["MAXBIS"], second["AVGSQI"], second["AVGSR"]) == (27.0, 22.0, 38.0, 60.0, 4.0)
    assert second["AVGBURST"] is None and second["RESVAR"] is None  # 254.0 / 255.0 in the file
    assert records[8].device_time == datetime(2013, 11, 5, 17, 42) and records[8].values["AVGBIS"] is None
    assert records[47].values["BISBITS"] == 0x1E  # "001e" at 18:21
    last = records[-1]
    assert last.device_time == datetime(2013, 11, 5, 20, 51) and last.values["AVGBIS"] == 20.0 and last.values["AVGSR"] == 53.0
    for r in records:  # invalid markers never leak out as numbers
        assert all(v is None or v < 254 for k, v in r.values.items() if k != "BISBITS")


@pytest.mark.parametrize("name", [LIVE1, LIVE2, HISTORY])
def test_byte_by_byte_equals_whole_file(shared_dir, name):
    data = (shared_dir / "data" / "bis" / name).read_bytes()
    whole, _ = parse_bytes(data)
    p = BISParser()
    trickled = [r for i in range(len(data)) for r in p.feed(data[i:i + 1])]
    p.finish()
    assert trickled == whole and len(whole) > 0


# -- headers ---------------------------------------------------------------------------------------


def test_canonical_names():
    assert [canonical_name(c) for c in ("SR11", "SR12", "SEF07", "SEF08", "SQI09", "SQI10", "BISBIT00", "TOTPOW07", "EMGLOW01", "ARTF2", "IMPEDNCE", "BIS", "DSC")] == [
        "SR", "SR", "SEF", "SEF", "SQI", "SQI", "BISBIT", "TOTPOW", "EMGLOW", "ARTF2", "IMPEDNCE", "BIS", "DSC"]


@pytest.mark.parametrize("suffixes", [("11", "07", "07", "09"), ("12", "08", "08", "10")])
def test_firmware_header_variants(suffixes):
    sr, sef, tp, sqi = suffixes
    cols = f"|SR{sr}    |SEF{sef}   |BISBIT00|BIS     |TOTPOW{tp}|EMGLOW01|SQI{sqi}   |IMPEDNCE|ARTF2   "
    hdr = ("TIME               |DSC     |PIC     |Filters |Alarm   |Lo-Limit|Hi-Limit|Silence " + cols * 3 + "|\r\n").encode()
    records, p = parse_bytes(hdr + record())
    assert p.stats.headers == 1 and p.header.columns[8] == f"SR{sr}"
    r = records[0]
    assert r.channels["1"]["BIS"] == 36.2 and r.channels["2"]["BIS"] == 32.8 and r.channels["1"]["SQI"] == 100.0
    assert r.channels["2"]["IMPEDNCE"] == 7 and r.channels["12"]["IMPEDNCE"] == 0
    assert r.device_time == datetime(2015, 7, 3, 13, 39, 45) and r.settings["Silence"] == "Yes"


def test_s_hdr_labels_channels_and_two_channel_firmware():
    shdr = "S_HDR3             |SYS 3.30|        |        |        |        |        |        |Ch. 1   |" + "        |" * 8 + "Ch. 12  |" + "        |" * 8 + "\r\n"
    cols = "|SR12    |SEF08   |BISBIT00|BIS     |TOTPOW08|EMGLOW01|SQI10   |IMPEDNCE|ARTF2   "
    time_hdr = "TIME               |DSC     |PIC     |Filters |Alarm   |Lo-Limit|Hi-Limit|Silence " + cols * 2 + "|\r\n"
    rec = ("07/03/2015 13:39:45" + GLOBALS + block(bis="41.0") + block(bis="42.0", imp="0") + "\r\n").encode()
    records, p = parse_bytes((shdr + time_hdr).encode() + rec)
    assert p.header.channels == ("1", "12") and p.header.system == "SYS 3.30" and p.header.size == 26
    assert records[0].channels["12"]["BIS"] == 42.0 and records[0].main_values()["BIS"] == 42.0
    assert records[0].to_reading("bis", 5).values["BIS"] == 42.0


def test_header_split_across_lines_and_blocks_without_s_hdr():
    h = Header.from_columns(["TIME", "DSC"] + ["SR", "BIS", "SQI"] * 2)
    assert h.channel_of == (None, None, "1", "1", "1", "2", "2", "2")
    raw = b"TIME               |DS\r\nC     |SR      |BIS\x00     |SQI     |SR      |BIS     |SQI     |\r\n" \
          b"07/03/2015 13:39:45|  10| 1.0| 50.0| 90.0| 2.0| 60.0| 80.0|\r\n"
    records, p = parse_bytes(raw)
    assert p.header.names == ("TIME", "DSC", "SR", "BIS", "SQI", "SR", "BIS", "SQI")
    assert records[0].channels == {"1": {"SR": 1.0, "BIS": 50.0, "SQI": 90.0}, "2": {"SR": 2.0, "BIS": 60.0, "SQI": 80.0}}


# -- one synthetic case per fault -------------------------------------------------------------------


def test_nul_bytes_inside_fields():
    data = record().replace(b"  36.2", b"  3\x006.2").replace(b"13:39", b"13\x00:39")
    records, p = parse_bytes(b"\x00\x00" + data)
    assert records[0].channels["1"]["BIS"] == 36.2 and records[0].channels["12"]["BIS"] == 36.2
    assert records[0].device_time.minute == 39
    assert p.stats.nul_bytes == 5 and p.stats.skipped_bytes == 0  # 2 leading, 2 in BIS fields, 1 in the time


def test_stray_line_breaks_rejoin_split_fields():
    data = record()
    broken = data[:30] + b"\r\n" + data[30:61] + b"\n" + data[61:200] + b"\r" + data[200:]
    broken = broken.replace(b"13:39:45", b"13:3\r\n9:45")
    assert parse_bytes(broken)[0] == parse_bytes(data)[0]


def test_lost_leading_bytes_resynchronise():
    data = record(when="07/03/2015 13:39:45") + record(when="07/03/2015 13:39:50")
    records, p = parse_bytes(data[57:])  # joined mid-record, as after plugging in a cable
    assert [r.device_time.second for r in records] == [50]
    assert p.stats.skipped_bytes > 0 and p.stats.records == 1


def test_lost_first_digit_of_month_uses_previous_record():
    data = record(when="12/31/2015 23:59:55") + record(when="2/31/2015 23:59:59")
    records, p = parse_bytes(data)
    assert [r.device_time for r in records] == [datetime(2015, 12, 31, 23, 59, 55), datetime(2015, 12, 31, 23, 59, 59)]
    assert p.stats.repaired_times == 1
    alone, _ = parse_bytes(record(when="7/03/2015 13:39:45"))
    assert alone[0].device_time == datetime(2015, 7, 3, 13, 39, 45)


def test_garbage_between_records_and_corrupt_record():
    junk = b"COM1 port is open.\r\n\x02\x02?r??\xff\xfe  H?"
    corrupt = record(when="07/03/2015 13:39:47").replace(b"   36.2", b"  \x02r?..")
    data = junk + record() + b"V/I operacija je bila prekinjena\r\n" + corrupt + record(when="07/03/2015 13:39:50") + b"COM1 port is closed.\r\n"
    records, p = parse_bytes(data)
    assert [r.device_time.second for r in records] == [45, 50]
    assert p.stats.corrupt_records == 1 and p.stats.skipped_bytes > len(junk)


def test_partial_records_are_counted_not_emitted():
    full = record(when="07/03/2015 13:39:50")
    cut = record(when="07/03/2015 13:39:45")[:150]
    records, p = parse_bytes(cut + b"\r\n" + full + full[:100])
    assert [r.device_time.second for r in records] == [50]
    assert p.stats.partial_records == 2  # one cut by the next record, one by the end of the stream


def test_invalid_values_become_none():
    data = record(ch1={"bis": "", "sqi": "---", "imp": "3277"}, ch2={"bis": "-3276.8", "emg": "*****", "artf": "--------"})
    records, p = parse_bytes(data)
    c1, c2 = records[0].channels["1"], records[0].channels["2"]
    assert c1["BIS"] is None and c1["SQI"] is None and c1["IMPEDNCE"] is None and c1["SR"] == 0.0
    assert c2["BIS"] is None and c2["EMGLOW"] is None and c2["ARTF2"] is None and c2["SQI"] == 100.0
    assert p.stats.invalid_values == 6
    reading = records[0].to_reading("bis", 1, main_channel="1")
    assert reading.values["BIS"] is None and reading.channels["2"]["BIS"] is None


def test_history_255_synthetic():
    data = (b"HISTORY            |VISTA   |    3.22|\r\nTime               |SENSOR  |AVGBIS  |AVGSQI  |BISBITS |\r\n"
            b"11/05/2013 17:34:00|      27|   255.0|    96.0|    0048|\r\n11/05/2013 17:35:00|      27|    41.0|   255.0|    0050|\r\n")
    records, p = parse_bytes(data)
    assert [r.values for r in records] == [
        {"SENSOR": 27, "AVGBIS": None, "AVGSQI": 96.0, "BISBITS": 0x48},
        {"SENSOR": 27, "AVGBIS": 41.0, "AVGSQI": None, "BISBITS": 0x50},
    ]
    assert records[0].to_reading("bis", 0).kind == "bis-history"


def test_record_is_returned_by_the_feed_that_brings_its_last_byte():
    data = record()
    last_bar = data.rindex(b"|")
    p = BISParser()
    assert p.feed(data[:last_bar]) == []
    assert len(p.feed(data[last_bar:last_bar + 1])) == 1


def test_memory_bounded_on_endless_garbage():
    p = BISParser()
    for _ in range(200):
        assert p.feed(b"\x55" * 5000) == []
    assert len(p._buf) <= MAX_TOKEN_CHARS and p.stats.skipped_bytes >= 1_000_000 - MAX_TOKEN_CHARS
    assert p.feed(b"|" + record()) and p.stats.records == 1


def test_version_line_does_not_become_a_record():
    data = b"VERSION |07/03/2015 13:39:40|    3.30|    3.30|    1.25|    1.08|" + record()
    records, p = parse_bytes(data)
    assert len(records) == 1 and p.version[0] == "07/03/2015 13:39:40" and p.version[1] == "3.30"
