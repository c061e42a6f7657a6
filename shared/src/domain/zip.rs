//! A zip archive written front to back, one stored (uncompressed) entry at a time, so it
//! can be streamed or uploaded in parts without ever seeking. Participants' files (label
//! files, notebooks, model weights) are mostly compressed already; storing keeps the
//! assembly cheap. Zip64 records are written when the archive or an entry needs them, so
//! no size limit applies beyond the store's.

use crate::error::{Error, Result};

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL: u32 = 0x0605_4b50;
const ZIP64_END: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
/// Names are UTF-8 (general-purpose flag bit 11).
const UTF8_NAMES: u16 = 1 << 11;
const VERSION_ZIP64: u16 = 45;

struct Entry {
    name: String,
    crc: u32,
    size: u64,
    offset: u64,
    dos_time: u16,
    dos_date: u16,
}

/// Builds the archive; every call returns the bytes to append to what came before.
#[derive(Default)]
pub struct ZipWriter {
    entries: Vec<Entry>,
    written: u64,
}

impl ZipWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The local header and the data of one file. `modified_ms` is its time (UTC).
    pub fn entry(&mut self, name: &str, data: &[u8], modified_ms: i64) -> Result<Vec<u8>> {
        if name.is_empty() || name.len() > u16::MAX as usize {
            return Err(Error::validation(format!(
                "zip entry name {name:?} is unusable"
            )));
        }
        let (dos_time, dos_date) = dos_datetime(modified_ms);
        let size = data.len() as u64;
        let crc = crc32fast::hash(data);
        let mut out = Vec::with_capacity(30 + name.len() + 20 + data.len());
        let zip64 = size >= u32::MAX as u64;
        put32(&mut out, LOCAL_HEADER);
        put16(&mut out, if zip64 { VERSION_ZIP64 } else { 20 });
        put16(&mut out, UTF8_NAMES);
        put16(&mut out, 0); // stored
        put16(&mut out, dos_time);
        put16(&mut out, dos_date);
        put32(&mut out, crc);
        let small = if zip64 { u32::MAX } else { size as u32 };
        put32(&mut out, small);
        put32(&mut out, small);
        put16(&mut out, name.len() as u16);
        put16(&mut out, if zip64 { 20 } else { 0 });
        out.extend_from_slice(name.as_bytes());
        if zip64 {
            put16(&mut out, 1);
            put16(&mut out, 16);
            put64(&mut out, size);
            put64(&mut out, size);
        }
        out.extend_from_slice(data);
        self.entries.push(Entry {
            name: name.to_string(),
            crc,
            size,
            offset: self.written,
            dos_time,
            dos_date,
        });
        self.written += out.len() as u64;
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The central directory and its end records.
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::new();
        let directory_start = self.written;
        for e in &self.entries {
            let needs64 = e.size >= u32::MAX as u64 || e.offset >= u32::MAX as u64;
            put32(&mut out, CENTRAL_HEADER);
            put16(&mut out, VERSION_ZIP64 | (3 << 8)); // made by: Unix
            put16(&mut out, if needs64 { VERSION_ZIP64 } else { 20 });
            put16(&mut out, UTF8_NAMES);
            put16(&mut out, 0);
            put16(&mut out, e.dos_time);
            put16(&mut out, e.dos_date);
            put32(&mut out, e.crc);
            let small = if needs64 { u32::MAX } else { e.size as u32 };
            put32(&mut out, small);
            put32(&mut out, small);
            put16(&mut out, e.name.len() as u16);
            put16(&mut out, if needs64 { 28 } else { 0 });
            put16(&mut out, 0); // comment
            put16(&mut out, 0); // disk
            put16(&mut out, 0); // internal attributes
            put32(&mut out, 0o100644 << 16); // a regular file, rw-r--r--
            put32(&mut out, if needs64 { u32::MAX } else { e.offset as u32 });
            out.extend_from_slice(e.name.as_bytes());
            if needs64 {
                put16(&mut out, 1);
                put16(&mut out, 24);
                put64(&mut out, e.size);
                put64(&mut out, e.size);
                put64(&mut out, e.offset);
            }
        }
        let directory_size = out.len() as u64;
        let count = self.entries.len() as u64;
        let needs64 = count >= u16::MAX as u64
            || directory_start >= u32::MAX as u64
            || directory_size >= u32::MAX as u64;
        if needs64 {
            let zip64_end_at = directory_start + directory_size;
            put32(&mut out, ZIP64_END);
            put64(&mut out, 44);
            put16(&mut out, VERSION_ZIP64 | (3 << 8));
            put16(&mut out, VERSION_ZIP64);
            put32(&mut out, 0);
            put32(&mut out, 0);
            put64(&mut out, count);
            put64(&mut out, count);
            put64(&mut out, directory_size);
            put64(&mut out, directory_start);
            put32(&mut out, ZIP64_LOCATOR);
            put32(&mut out, 0);
            put64(&mut out, zip64_end_at);
            put32(&mut out, 1);
        }
        put32(&mut out, END_OF_CENTRAL);
        put16(&mut out, 0);
        put16(&mut out, 0);
        let small_count = count.min(u16::MAX as u64) as u16;
        put16(&mut out, small_count);
        put16(&mut out, small_count);
        put32(&mut out, directory_size.min(u32::MAX as u64) as u32);
        put32(&mut out, directory_start.min(u32::MAX as u64) as u32);
        put16(&mut out, 0);
        out
    }
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// MS-DOS time and date (2-second resolution, 1980–2107), as zip stores them.
fn dos_datetime(ms: i64) -> (u16, u16) {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) else {
        return (0, 0x21); // 1980-01-01
    };
    if t.year() < 1980 || t.year() > 2107 {
        return (0, 0x21);
    }
    let time = (t.hour() as u16) << 11 | (t.minute() as u16) << 5 | (t.second() as u16 / 2);
    let date = ((t.year() - 1980) as u16) << 9 | (u8::from(t.month()) as u16) << 5 | t.day() as u16;
    (time, date)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the archive back through its central directory, the way unzip tools do.
    fn read_back(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
        let end = zip.len() - 22;
        assert_eq!(&zip[end..end + 4], &END_OF_CENTRAL.to_le_bytes());
        let u16_at = |i: usize| u16::from_le_bytes([zip[i], zip[i + 1]]) as usize;
        let u32_at = |i: usize| u32::from_le_bytes(zip[i..i + 4].try_into().unwrap()) as usize;
        let count = u16_at(end + 10);
        let mut at = u32_at(end + 16);
        let mut files = Vec::new();
        for _ in 0..count {
            assert_eq!(u32_at(at), CENTRAL_HEADER as usize);
            let crc = u32_at(at + 16) as u32;
            let size = u32_at(at + 20);
            let name_len = u16_at(at + 28);
            let extra_len = u16_at(at + 30);
            let offset = u32_at(at + 42);
            let name = String::from_utf8(zip[at + 46..at + 46 + name_len].to_vec()).unwrap();
            let local_name_len = u16_at(offset + 26);
            let local_extra = u16_at(offset + 28);
            let data_at = offset + 30 + local_name_len + local_extra;
            let data = zip[data_at..data_at + size].to_vec();
            assert_eq!(crc32fast::hash(&data), crc, "{name}");
            files.push((name, data));
            at += 46 + name_len + extra_len;
        }
        files
    }

    #[test]
    fn entries_read_back_byte_for_byte() {
        let mut w = ZipWriter::new();
        let mut zip = Vec::new();
        let files = [
            (
                "vm-1 (a@b.org)/labels/été.slp",
                b"\x00\x01binary\xff".to_vec(),
            ),
            ("vm-2/empty.slp", Vec::new()),
            ("vm-2/big.ipynb", vec![7u8; 70_000]),
        ];
        for (name, data) in &files {
            zip.extend(w.entry(name, data, 1_733_000_000_000).unwrap());
        }
        zip.extend(w.finish());
        let back = read_back(&zip);
        assert_eq!(back.len(), 3);
        for ((name, data), (n, d)) in files.iter().zip(&back) {
            assert_eq!(name, n);
            assert_eq!(data, d);
        }
    }

    #[test]
    fn an_empty_archive_is_just_its_end_record() {
        let zip = ZipWriter::new().finish();
        assert_eq!(zip.len(), 22);
        assert!(read_back(&zip).is_empty());
    }

    #[test]
    fn dos_times_are_clamped_to_what_zip_can_say() {
        assert_eq!(dos_datetime(0), (0, 0x21));
        let (_, date) = dos_datetime(1_733_000_000_000); // 2024-11-30
        assert_eq!(date >> 9, 44);
    }
}
