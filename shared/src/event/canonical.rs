//! Canonical JSON written straight from a `Serialize` value: the same bytes
//! as [`super::canonical_json`] of `serde_json::to_value(value)`, without
//! building the `Value` tree first. The edge node's writer seals an event
//! for every booking; going through `Value` cost it a third of the sealing.
//!
//! Objects are sorted by key at every depth, as `Value`'s map would be
//! (a later duplicate key replaces an earlier one); numbers, strings and
//! `null` are written as `serde_json` writes them.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::ops::Range;

use serde::ser::{self, Impossible, Serialize};

use super::write_json_string;

pub(super) type Error = serde_json::Error;

fn error(message: &str) -> Error {
    ser::Error::custom(message)
}

/// Writes `value` as canonical JSON onto `out`.
pub(super) fn write<T: Serialize + ?Sized>(value: &T, out: &mut String) -> Result<(), Error> {
    value.serialize(Canonical { out })
}

/// The members of `value`, which must serialize as a JSON object, each as
/// its key and its canonical JSON, sorted by key.
pub(super) fn members<T: Serialize + ?Sized>(
    value: &T,
) -> Result<Vec<(Cow<'static, str>, String)>, Error> {
    value.serialize(Members)
}

struct Canonical<'a> {
    out: &'a mut String,
}

/// A member of an object being collected: its key and where its canonical
/// JSON lies in the object's buffer.
type Member = (Cow<'static, str>, Range<usize>);

/// Sorts collected members by key; among equal keys the last one stays.
fn sort(members: &mut Vec<Member>) {
    members.reverse();
    members.sort_by(|a, b| a.0.cmp(&b.0));
    members.dedup_by(|later, earlier| later.0 == earlier.0);
}

fn write_object<'m>(members: impl IntoIterator<Item = (&'m str, &'m str)>, out: &mut String) {
    out.push('{');
    for (i, (key, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(key, out);
        out.push(':');
        out.push_str(value);
    }
    out.push('}');
}

fn write_number(out: &mut String, n: impl std::fmt::Display) {
    let _ = write!(out, "{n}");
}

impl<'a> ser::Serializer for Canonical<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = VariantSeq<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = VariantObject<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        write_number(self.out, v);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        write_number(self.out, v);
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        // As `Value` holds it: a finite number, or null.
        match serde_json::Number::from_f64(v) {
            Some(n) => write_number(self.out, n),
            None => self.out.push_str("null"),
        }
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        write_json_string(v.encode_utf8(&mut [0; 4]), self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_json_string(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        use ser::SerializeSeq as _;
        let mut seq = self.serialize_seq(Some(v.len()))?;
        for byte in v {
            seq.serialize_element(byte)?;
        }
        seq.end()
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.push_str("null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        let mut inner = String::new();
        write(value, &mut inner)?;
        write_object([(variant, inner.as_str())], self.out);
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Seq<'a>, Error> {
        self.out.push('[');
        Ok(Seq {
            out: self.out,
            first: true,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Seq<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<VariantSeq<'a>, Error> {
        Ok(VariantSeq {
            out: self.out,
            variant,
            items: String::from("["),
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, Error> {
        Ok(Object::new(Some(self.out), len))
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Object<'a>, Error> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantObject<'a>, Error> {
        Ok(VariantObject {
            out: self.out,
            variant,
            object: Object::new(None, Some(len)),
        })
    }
}

struct Seq<'a> {
    out: &'a mut String,
    first: bool,
}

impl Seq<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        write(value, self.out)
    }

    fn close(self) -> Result<(), Error> {
        self.out.push(']');
        Ok(())
    }
}

impl ser::SerializeSeq for Seq<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

impl ser::SerializeTuple for Seq<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

impl ser::SerializeTupleStruct for Seq<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

struct VariantSeq<'a> {
    out: &'a mut String,
    variant: &'static str,
    items: String,
}

impl ser::SerializeTupleVariant for VariantSeq<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if self.items.len() > 1 {
            self.items.push(',');
        }
        write(value, &mut self.items)
    }
    fn end(mut self) -> Result<(), Error> {
        self.items.push(']');
        write_object([(self.variant, self.items.as_str())], self.out);
        Ok(())
    }
}

/// An object being collected: its members are written one after another
/// into one buffer, and sorted once all are known. Without `out`, the
/// object is kept for the caller instead of written.
struct Object<'a> {
    out: Option<&'a mut String>,
    buf: String,
    members: Vec<Member>,
    key: Option<String>,
}

impl<'a> Object<'a> {
    fn new(out: Option<&'a mut String>, len: Option<usize>) -> Self {
        Self {
            out,
            buf: String::new(),
            members: Vec::with_capacity(len.unwrap_or(0)),
            key: None,
        }
    }

    fn member<T: Serialize + ?Sized>(
        &mut self,
        key: Cow<'static, str>,
        value: &T,
    ) -> Result<(), Error> {
        let start = self.buf.len();
        write(value, &mut self.buf)?;
        self.members.push((key, start..self.buf.len()));
        Ok(())
    }

    /// Sorts the members and writes the object to `out`, if any.
    fn close(mut self) -> Self {
        sort(&mut self.members);
        if let Some(out) = self.out.take() {
            self.write_to(out);
        }
        self
    }

    fn write_to(&self, out: &mut String) {
        write_object(
            self.members
                .iter()
                .map(|(key, range)| (&**key, &self.buf[range.clone()])),
            out,
        );
    }

    fn into_members(self) -> MembersOk {
        self.members
            .into_iter()
            .map(|(key, range)| (key, self.buf[range].to_owned()))
            .collect()
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(key.serialize(KeySerializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| error("a map value came without its key"))?;
        self.member(Cow::Owned(key), value)
    }
    fn end(self) -> Result<(), Error> {
        self.close();
        Ok(())
    }
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.member(Cow::Borrowed(key), value)
    }
    fn end(self) -> Result<(), Error> {
        self.close();
        Ok(())
    }
}

struct VariantObject<'a> {
    out: &'a mut String,
    variant: &'static str,
    object: Object<'static>,
}

impl ser::SerializeStructVariant for VariantObject<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.object.member(Cow::Borrowed(key), value)
    }
    fn end(self) -> Result<(), Error> {
        let mut inner = String::new();
        self.object.close().write_to(&mut inner);
        write_object([(self.variant, inner.as_str())], self.out);
        Ok(())
    }
}

/// Map keys as `serde_json` turns them into `Value` keys: strings as they
/// are, integers, booleans and chars as their text.
struct KeySerializer;

impl ser::Serializer for KeySerializer {
    type Ok = String;
    type Error = Error;
    type SerializeSeq = Impossible<String, Error>;
    type SerializeTuple = Impossible<String, Error>;
    type SerializeTupleStruct = Impossible<String, Error>;
    type SerializeTupleVariant = Impossible<String, Error>;
    type SerializeMap = Impossible<String, Error>;
    type SerializeStruct = Impossible<String, Error>;
    type SerializeStructVariant = Impossible<String, Error>;

    fn serialize_bool(self, v: bool) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_f32(self, _v: f32) -> Result<String, Error> {
        Err(error("a map key must be a string"))
    }
    fn serialize_f64(self, _v: f64) -> Result<String, Error> {
        Err(error("a map key must be a string"))
    }
    fn serialize_char(self, v: char) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<String, Error> {
        Ok(v.to_owned())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<String, Error> {
        Err(error("a map key must be a string"))
    }
    fn serialize_none(self) -> Result<String, Error> {
        Err(error("a map key must be a string"))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<String, Error> {
        Err(error("a map key must be a string"))
    }
    fn serialize_unit(self) -> Result<String, Error> {
        Err(error("a map key must be a string"))
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, Error> {
        Err(error("a map key must be a string"))
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String, Error> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<String, Error> {
        Err(error("a map key must be a string"))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(error("a map key must be a string"))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Error> {
        Err(error("a map key must be a string"))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(error("a map key must be a string"))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(error("a map key must be a string"))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(error("a map key must be a string"))
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Error> {
        Err(error("a map key must be a string"))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(error("a map key must be a string"))
    }
}

/// Collects the members of a top-level object instead of writing it.
struct Members;

type MembersOk = Vec<(Cow<'static, str>, String)>;

impl ser::Serializer for Members {
    type Ok = MembersOk;
    type Error = Error;
    type SerializeSeq = Impossible<MembersOk, Error>;
    type SerializeTuple = Impossible<MembersOk, Error>;
    type SerializeTupleStruct = Impossible<MembersOk, Error>;
    type SerializeTupleVariant = Impossible<MembersOk, Error>;
    type SerializeMap = TopObject;
    type SerializeStruct = TopObject;
    type SerializeStructVariant = Impossible<MembersOk, Error>;

    fn serialize_bool(self, _v: bool) -> Result<MembersOk, Error> {
        Err(error("expected an object"))
    }
    fn serialize_i8(self, _v: i8) -> Result<MembersOk, Error> {
        Err(error("expected an object"))
    }
    fn serialize_i16(self, _v: i16) -> Result<MembersOk, Error> {
        Err(error("expected an object"))
    }
    fn serialize_i32(self, _v: i32) -> Result<MembersOk, Error> {
        Err(error("expected an object"))
    }
    fn serialize_i64(self, _v: i64) -> Result<MembersOk, Error> {
        Err(error("expected an object"))
    }
    fn serialize_u8(self, _v: u8) -> Result<MembersOk, Error> {
        Err(error("expected an object"))
    }
    fn serialize_u16(self, _v: u16) -> Result<MembersOk, Error> {
        Err(error("expected an object"))
    }
    fn serialize_u32(self, _v: u32) -> Result<MembersOk, Error> {
        Err(error("expected an object"))
    }
    fn serialize_u64(self, _v: u64) -> Result<MembersOk, Error> {
        Err(error("expected an object"))
    }
    fn serialize_f32(self, _v: f32) -> Result<MembersOk, Error> {
        Err(error("expected an object"))
    }
    fn serialize_f64(self, _v: f64) -> Result<MembersOk, Error> {
        Err(error("expected an object"))
    }
    fn serialize_char(self, _v: char) -> Result<MembersOk, Error> {
        Err(error("expected an object"))
    }
    fn serialize_str(self, _v: &str) -> Result<MembersOk, Error> {
        Err(error("expected an object"))
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<MembersOk, Error> {
        Err(error("expected an object"))
    }
    fn serialize_none(self) -> Result<MembersOk, Error> {
        Err(error("expected an object"))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<MembersOk, Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<MembersOk, Error> {
        Err(error("expected an object"))
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<MembersOk, Error> {
        Err(error("expected an object"))
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
    ) -> Result<MembersOk, Error> {
        Err(error("expected an object"))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<MembersOk, Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<MembersOk, Error> {
        Err(error("expected an object"))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(error("expected an object"))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Error> {
        Err(error("expected an object"))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(error("expected an object"))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(error("expected an object"))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<TopObject, Error> {
        Ok(TopObject(Object::new(None, len)))
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<TopObject, Error> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(error("expected an object"))
    }
}

struct TopObject(Object<'static>);

impl ser::SerializeMap for TopObject {
    type Ok = MembersOk;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        ser::SerializeMap::serialize_key(&mut self.0, key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeMap::serialize_value(&mut self.0, value)
    }
    fn end(self) -> Result<MembersOk, Error> {
        Ok(self.0.close().into_members())
    }
}

impl ser::SerializeStruct for TopObject {
    type Ok = MembersOk;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.0.member(Cow::Borrowed(key), value)
    }
    fn end(self) -> Result<MembersOk, Error> {
        Ok(self.0.close().into_members())
    }
}
