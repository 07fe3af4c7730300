//! CSV records read within a memory bound: the `csv` crate's own parser
//! (`csv_core`, RFC 4180 with its defaults: `,`, `"`, doubled quotes, CR/LF
//! terminators, blank lines skipped, a UTF-8 BOM dropped) driven over a
//! buffered reader, holding at most `hold` bytes of a record's text and
//! `hold` field ends. A longer record is read to its end and reported as
//! [`Held::Truncated`] with its size and first bytes, so one unterminated
//! quote cannot make the reader hold the rest of the file.
//!
//! Positions (byte, line, record index) are counted as the `csv` crate
//! counts them, so records and their line numbers are the same as with
//! `csv::Reader` (tested against it).

use std::io::{self, BufRead, BufReader, Read};

/// Where a record starts, as the `csv` crate counts: the byte offset and
/// line reached after the record before it, and how many records (the
/// header included) came before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Byte offset.
    pub byte: u64,
    /// Line, from 1.
    pub line: u64,
    /// Records before this one.
    pub record: u64,
}

/// What one read gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Held {
    /// The whole record: see [`CsvReader::record`].
    Whole,
    /// A record too large to hold, read to its end and dropped.
    Truncated(Truncated),
}

/// A record too large to hold.
#[derive(Debug, PartialEq, Eq)]
pub struct Truncated {
    /// Its size as [`CsvRecord::bytes`] counts: text plus one per field.
    pub bytes: u64,
    /// It ended at the end of the file inside a quoted field: an opening
    /// quote was never closed.
    pub unclosed_quote: bool,
}

/// A field that is not UTF-8, as the `csv` crate reports it.
#[derive(Debug, PartialEq, Eq)]
pub struct NotUtf8 {
    /// Field index.
    pub field: usize,
    /// Valid bytes in the field before the error.
    pub valid_up_to: usize,
}

impl NotUtf8 {
    /// The error in the `csv` crate's words, for the record at `at`.
    pub fn describe(&self, at: Position) -> String {
        format!(
            "CSV parse error: record {} (line {}, field: {}, byte: {}): invalid utf-8: invalid UTF-8 in field {} near byte index {}",
            at.record, at.line, self.field, at.byte, self.field, self.valid_up_to
        )
    }
}

/// A record held whole, as text.
#[derive(Clone, Copy, Debug)]
pub struct CsvRecord<'a> {
    text: &'a str,
    ends: &'a [u32],
}

impl<'a> CsvRecord<'a> {
    /// Number of fields.
    pub fn field_count(&self) -> usize {
        self.ends.len()
    }

    /// Its fields in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let (text, ends) = (self.text, self.ends);
        let starts = std::iter::once(0).chain(ends.iter().map(|&e| e as usize));
        starts
            .zip(ends.iter())
            .map(move |(s, &e)| &text[s..e as usize])
    }

    /// Its size as `max_record_bytes` counts it: the text of its fields
    /// plus one byte per field (a separator or the line end).
    pub fn bytes(&self) -> usize {
        self.text.len() + self.ends.len()
    }
}

/// Reads CSV records from `R`, holding at most `hold` bytes of each.
pub struct CsvReader<R> {
    core: csv_core::Reader,
    input: BufReader<R>,
    /// The record's text; its length grows (doubling) up to `hold`.
    text: Vec<u8>,
    /// Bytes of `text` the record filled.
    len: usize,
    /// End of each field in the text, while there are at most `hold`.
    ends: Vec<u32>,
    /// Field ends of one parser call.
    call_ends: [usize; 64],
    /// Where the text of a record too large to hold goes.
    overflow: Vec<u8>,
    hold: usize,
    /// Where the record read last started; where the next one starts.
    start: Position,
    next: Position,
    done: bool,
}

impl<R: Read> CsvReader<R> {
    /// Read `input` through a 64 KiB buffer, holding at most `hold` bytes
    /// (at most `u32::MAX`) of a record's text and `hold` field ends.
    pub fn new(input: R, hold: usize) -> Self {
        Self::with_buffer(input, hold, 1 << 16)
    }

    /// As [`new`](Self::new), through a buffer of `capacity` bytes.
    pub fn with_buffer(input: R, hold: usize, capacity: usize) -> Self {
        let hold = hold.clamp(1, u32::MAX as usize);
        CsvReader {
            core: csv_core::Reader::new(),
            input: BufReader::with_capacity(capacity, input),
            text: vec![0; hold.min(64)],
            len: 0,
            ends: Vec::with_capacity(hold.min(64)),
            call_ends: [0; 64],
            overflow: vec![0; 1 << 13],
            hold,
            start: Position {
                byte: 0,
                line: 1,
                record: 0,
            },
            next: Position {
                byte: 0,
                line: 1,
                record: 0,
            },
            done: false,
        }
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        self.input.get_ref()
    }

    /// Where the record read last started.
    pub fn position(&self) -> Position {
        self.start
    }

    /// Read the next record; `None` at the end of the input. After an I/O
    /// error the input counts as ended.
    pub fn read(&mut self) -> io::Result<Option<Held>> {
        use csv_core::ReadRecordResult as Res;
        self.start = self.next;
        self.len = 0;
        self.ends.clear();
        if self.done {
            return Ok(None);
        }
        let (mut text_bytes, mut fields) = (0u64, 0u64);
        let mut last_byte = None;
        loop {
            if self.len == self.text.len() && self.len < self.hold {
                let grown = (self.len * 2).min(self.hold);
                self.text.resize(grown, 0);
            }
            let input = match self.input.fill_buf() {
                Ok(input) => input,
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            };
            let at_end = input.is_empty();
            // Text beyond `hold` goes to the overflow buffer, unkept.
            let out = if self.len < self.text.len() {
                &mut self.text[self.len..]
            } else {
                &mut self.overflow[..]
            };
            let (res, nin, nout, nend) = self.core.read_record(input, out, &mut self.call_ends);
            if nin > 0 {
                last_byte = Some(input[nin - 1]);
            }
            self.input.consume(nin);
            self.next.byte += nin as u64;
            self.next.line = self.core.line();
            if self.len < self.text.len() {
                self.len += nout;
            }
            text_bytes += nout as u64;
            fields += nend as u64;
            for &end in &self.call_ends[..nend] {
                // An end past the held text belongs to a truncated record.
                if end <= self.len && self.ends.len() < self.hold {
                    self.ends.push(end as u32);
                }
            }
            match res {
                // A full text grows (up to `hold`) before the next call.
                Res::InputEmpty | Res::OutputEndsFull | Res::OutputFull => {}
                Res::Record => {
                    self.next.record += 1;
                    if text_bytes == self.len as u64 && fields == self.ends.len() as u64 {
                        return Ok(Some(Held::Whole));
                    }
                    return Ok(Some(Held::Truncated(Truncated {
                        bytes: text_bytes + fields,
                        // Outside quotes a line end ends the record before the
                        // end of the input: here it did not.
                        unclosed_quote: at_end && matches!(last_byte, Some(b'\n' | b'\r')),
                    })));
                }
                Res::End => {
                    self.done = true;
                    return Ok(None);
                }
            }
        }
    }

    /// The record read last, when it was held whole, as text; or the first
    /// field that is not UTF-8.
    pub fn record(&self) -> Result<CsvRecord<'_>, NotUtf8> {
        let bytes = &self.text[..self.len];
        if !bytes.is_ascii() {
            // Each field on its own, as the csv crate checks: a character
            // split across two fields is an error in both.
            self.fields_are_utf8()?;
        }
        let text = std::str::from_utf8(bytes).expect("fields that are each UTF-8 join into UTF-8");
        Ok(CsvRecord {
            text,
            ends: &self.ends,
        })
    }

    fn fields_are_utf8(&self) -> Result<(), NotUtf8> {
        let mut start = 0;
        for (field, &end) in self.ends.iter().enumerate() {
            if let Err(e) = std::str::from_utf8(&self.text[start..end as usize]) {
                return Err(NotUtf8 {
                    field,
                    valid_up_to: e.valid_up_to(),
                });
            }
            start = end as usize;
        }
        Ok(())
    }

    /// The first `limit` bytes of the record read last (whole or not): its
    /// held fields joined by commas, for a dead letter.
    pub fn raw_prefix(&self, limit: usize) -> String {
        let mut raw = Vec::with_capacity(limit.min(self.len + self.ends.len()));
        let last_end = self.ends.last().map_or(0, |&e| e as usize);
        // The held start of a field that did not end within `hold`.
        let partial = (self.len > last_end).then_some(self.len);
        let mut start = 0;
        for (i, end) in self
            .ends
            .iter()
            .map(|&e| e as usize)
            .chain(partial)
            .enumerate()
        {
            if i > 0 {
                raw.push(b',');
            }
            let room = limit.saturating_sub(raw.len());
            raw.extend_from_slice(&self.text[start..end.min(start + room)]);
            if raw.len() >= limit {
                break;
            }
            start = end;
        }
        raw.truncate(limit);
        String::from_utf8_lossy(&raw).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A header, or a record with its line, byte and record index; or the
    /// error met there.
    type Step = Result<(Vec<String>, u64, u64, u64), String>;

    /// What `csv::Reader` (as the file source used it before: header first,
    /// flexible width) reads from `data`, up to the first header error.
    fn read_with_csv_crate(data: &[u8]) -> Vec<Step> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(data);
        let header = match rdr.headers() {
            Ok(h) => Ok((h.iter().map(String::from).collect(), 0, 0, 0)),
            Err(e) => Err(e.to_string()),
        };
        let mut steps = vec![header];
        if steps[0].is_err() {
            return steps;
        }
        let mut rec = csv::StringRecord::new();
        loop {
            match rdr.read_record(&mut rec) {
                Ok(false) => return steps,
                Ok(true) => {
                    let p = rec.position().unwrap();
                    let fields = rec.iter().map(String::from).collect();
                    steps.push(Ok((fields, p.line(), p.byte(), p.record())));
                }
                Err(e) => {
                    let line = e.position().unwrap().line();
                    steps.push(Err(format!("{e} at line {line}")));
                }
            }
        }
    }

    /// The same through [`CsvReader`], with an input buffer of `buffer` bytes.
    fn read_with_csv_reader(data: &[u8], buffer: usize) -> Vec<Step> {
        let mut r = CsvReader::with_buffer(data, 1 << 20, buffer);
        let held = r.read().unwrap();
        assert!(matches!(held, None | Some(Held::Whole)), "{held:?}");
        let header = match r.record() {
            Ok(h) => Ok((h.iter().map(String::from).collect(), 0, 0, 0)),
            Err(e) => Err(e.describe(r.position())),
        };
        let mut steps = vec![header];
        if steps[0].is_err() {
            return steps;
        }
        while let Some(held) = r.read().unwrap() {
            assert_eq!(held, Held::Whole);
            let p = r.position();
            steps.push(match r.record() {
                Ok(rec) => Ok((
                    rec.iter().map(String::from).collect(),
                    p.line,
                    p.byte,
                    p.record,
                )),
                Err(e) => Err(format!("{} at line {}", e.describe(p), p.line)),
            });
        }
        steps
    }

    proptest! {
        #[test]
        fn reads_what_the_csv_crate_reads(
            bom in any::<bool>(),
            body in prop::collection::vec(
                prop::sample::select(b"ab ,\"\n\r\xc3\xa9\xff".to_vec()),
                0..300,
            ),
            buffer in 1usize..40,
        ) {
            // csv_core drops a BOM only when the first read holds it and more
            // (the csv crate's 8 KiB buffer and ours of 64 KiB always do).
            let buffer = if bom { buffer.max(4) } else { buffer };
            let mut data = if bom { b"\xef\xbb\xbf".to_vec() } else { Vec::new() };
            data.extend_from_slice(&body);
            prop_assert_eq!(read_with_csv_reader(&data, buffer), read_with_csv_crate(&data));
        }
    }

    proptest! {
        #[test]
        fn a_record_over_the_bound_is_reported_and_the_next_read_whole(
            body in prop::collection::vec(
                prop::sample::select(b"ab ,\"\n\r\xc3\xa9\xff".to_vec()),
                0..300,
            ),
            hold in 1usize..40,
            buffer in 1usize..40,
        ) {
            let mut old = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(&body[..]);
            let mut r = CsvReader::with_buffer(&body[..], hold, buffer);
            let mut rec = csv::ByteRecord::new();
            while old.read_byte_record(&mut rec).unwrap() {
                let p = rec.position().unwrap();
                let text: usize = rec.iter().map(|f| f.len()).sum();
                let held = r.read().unwrap();
                prop_assert_eq!((r.position().line, r.position().byte), (p.line(), p.byte()));
                if text > hold || rec.len() > hold {
                    let bytes = (text + rec.len()) as u64;
                    prop_assert!(matches!(held, Some(Held::Truncated(ref t)) if t.bytes == bytes), "{:?}", held);
                    let joined = rec.iter().collect::<Vec<_>>().join(&b","[..]);
                    let limit = hold / 2;
                    let want = String::from_utf8_lossy(&joined[..limit.min(joined.len())]);
                    prop_assert_eq!(r.raw_prefix(limit), want);
                } else {
                    prop_assert_eq!(held, Some(Held::Whole));
                    let mut start = 0;
                    let mine: Vec<&[u8]> = r.ends.iter().map(|&e| {
                        let f = &r.text[start..e as usize];
                        start = e as usize;
                        f
                    }).collect();
                    prop_assert_eq!(mine, rec.iter().collect::<Vec<_>>());
                }
            }
            prop_assert_eq!(r.read().unwrap(), None);
        }
    }

    #[test]
    fn a_record_longer_than_its_buffer_grows_it_whatever_the_reads() {
        // Found by the property above: with one-byte reads the parser can
        // fill the text exactly and ask for input, not for room.
        let field = "a".repeat(100);
        let data = format!("\"{field}\"\n");
        let mut r = CsvReader::with_buffer(data.as_bytes(), 1 << 20, 1);
        assert_eq!(r.read().unwrap(), Some(Held::Whole));
        assert_eq!(r.record().unwrap().iter().collect::<Vec<_>>(), [field]);
    }

    #[test]
    fn a_record_over_the_bound_is_read_past_and_rejected_with_its_start() {
        let data = b"h,i\n0123456789,\"ab\nc\",x\nok,1\n";
        let mut r = CsvReader::with_buffer(&data[..], 8, 3);
        assert_eq!(r.read().unwrap(), Some(Held::Whole));
        assert_eq!(
            r.read().unwrap(),
            Some(Held::Truncated(Truncated {
                bytes: 15 + 3,
                unclosed_quote: false,
            }))
        );
        assert_eq!(r.position().line, 2);
        assert_eq!(r.raw_prefix(100), "01234567");
        assert_eq!(r.raw_prefix(4), "0123");
        assert_eq!(r.read().unwrap(), Some(Held::Whole));
        let rec = r.record().unwrap();
        assert_eq!(rec.iter().collect::<Vec<_>>(), ["ok", "1"]);
        assert_eq!((r.position().line, rec.bytes()), (4, 5));
        assert_eq!(r.read().unwrap(), None);
    }

    #[test]
    fn an_unclosed_quote_is_the_rest_of_the_file_held_within_the_bound() {
        let mut data = b"h\nok\n\"open,".to_vec();
        data.extend(b"0123456789\n".repeat(10_000));
        let mut r = CsvReader::with_buffer(&data[..], 64, 4096);
        assert_eq!(r.read().unwrap(), Some(Held::Whole));
        assert_eq!(r.read().unwrap(), Some(Held::Whole));
        match r.read().unwrap() {
            Some(Held::Truncated(t)) => {
                assert!(t.unclosed_quote);
                assert_eq!(t.bytes, 5 + 110_000 + 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.position().line, 3);
        assert_eq!(r.read().unwrap(), None);
        assert!(
            r.text.len() <= 64 && r.ends.capacity() <= 64,
            "held within the bound"
        );
    }

    #[test]
    fn too_many_fields_are_over_the_bound_too() {
        let data = b"h\n,,,,,,,,,,\nend\n";
        let mut r = CsvReader::with_buffer(&data[..], 4, 2);
        r.read().unwrap();
        assert_eq!(
            r.read().unwrap(),
            Some(Held::Truncated(Truncated {
                bytes: 11,
                unclosed_quote: false,
            }))
        );
        assert_eq!(r.raw_prefix(100), ",,,");
        assert_eq!(r.read().unwrap(), Some(Held::Whole));
        assert_eq!(r.record().unwrap().iter().collect::<Vec<_>>(), ["end"]);
    }
}
