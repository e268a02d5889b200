//! The v0.3 shape of a task, serialized in one pass.
//!
//! [`V03`] serializes a value with its own `Serialize` implementation, but
//! through a serializer that, in the structs named in [`rules`], writes
//! some fields under their v0.3 spelling instead of the model's (`taskARN`
//! for `taskArn`) and adds the fields v0.3 requires when the model leaves
//! them out (see [`super::shape`] for the shape). Nothing is built in between: a list of a thousand tasks
//! goes straight to the response bytes.

use serde::ser::{
    Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant, SerializeTuple,
    SerializeTupleStruct, SerializeTupleVariant, Serializer,
};

/// A value required by v0.3 when the model has none.
#[derive(Clone, Copy)]
enum Fallback {
    /// `""`.
    EmptyString,
    /// `0`.
    Zero,
    /// `[]`.
    EmptyList,
    /// `{"containerOverrides": []}`.
    NoOverrides,
}

impl Serialize for Fallback {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Fallback::EmptyString => s.serialize_str(""),
            Fallback::Zero => s.serialize_i64(0),
            Fallback::EmptyList => s.serialize_seq(Some(0))?.end(),
            Fallback::NoOverrides => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("containerOverrides", &Fallback::EmptyList)?;
                m.end()
            }
        }
    }
}

/// A field v0.3 requires: its name, its value when missing, and whether the
/// model may send it as `null` (then replaced too).
struct Required {
    key: &'static str,
    default: Fallback,
    nullable: bool,
}

const fn req(key: &'static str, default: Fallback) -> Required {
    Required {
        key,
        default,
        nullable: false,
    }
}

/// What a struct of the model becomes in v0.3: fields written under v0.3's
/// name (model name, v0.3 name), and required fields (by v0.3 name).
struct Rules {
    renames: &'static [(&'static str, &'static str)],
    required: &'static [Required],
}

const NONE: Rules = Rules {
    renames: &[],
    required: &[],
};

/// The rules of a model struct, by its serde name.
fn rules(name: &str) -> &'static Rules {
    use Fallback::*;
    static TASK: Rules = Rules {
        renames: &[
            ("clusterArn", "clusterARN"),
            ("taskArn", "taskARN"),
            ("taskDefinitionArn", "taskDefinitionARN"),
            ("containerInstanceArn", "containerInstanceARN"),
        ],
        required: &[
            req("containerInstanceARN", EmptyString),
            req("createdAt", EmptyString),
            req("overrides", NoOverrides),
        ],
    };
    static TASK_OVERRIDE: Rules = Rules {
        renames: &[],
        required: &[req("containerOverrides", EmptyList)],
    };
    static CONTAINER_OVERRIDE: Rules = Rules {
        renames: &[],
        required: &[req("name", EmptyString)],
    };
    static KEY_VALUE: Rules = Rules {
        renames: &[],
        required: &[
            Required {
                key: "name",
                default: EmptyString,
                nullable: true,
            },
            Required {
                key: "value",
                default: EmptyString,
                nullable: true,
            },
        ],
    };
    static CONTAINER: Rules = Rules {
        renames: &[("containerArn", "containerARN")],
        required: &[
            req("containerARN", EmptyString),
            req("lastStatus", EmptyString),
        ],
    };
    static NETWORK_BINDING: Rules = Rules {
        renames: &[],
        required: &[
            req("bindIP", EmptyString),
            req("containerPort", Zero),
            req("hostPort", Zero),
        ],
    };
    match name {
        "Task" => &TASK,
        "TaskOverride" => &TASK_OVERRIDE,
        "ContainerOverride" => &CONTAINER_OVERRIDE,
        "KeyValuePair" => &KEY_VALUE,
        "Container" => &CONTAINER,
        "NetworkBinding" => &NETWORK_BINDING,
        _ => &NONE,
    }
}

/// A value serialized in its v0.3 shape.
pub(crate) struct V03<'a, T: ?Sized>(pub(crate) &'a T);

impl<T: Serialize + ?Sized> Serialize for V03<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(Shaper(s))
    }
}

/// Whether a value serializes as `null`.
fn is_null<T: Serialize + ?Sized>(value: &T) -> bool {
    matches!(serde_json::to_value(value), Ok(serde_json::Value::Null))
}

/// The serializer that applies [`rules`] to every struct on the way down.
struct Shaper<S>(S);

/// A struct being serialized, with what it has written so far.
struct ShapedStruct<C> {
    inner: C,
    rules: &'static Rules,
    /// Which required fields were written (by index in `rules.required`).
    seen: u8,
}

impl<C: SerializeStruct> ShapedStruct<C> {
    fn mark(&mut self, key: &str) {
        if let Some(i) = self.rules.required.iter().position(|r| r.key == key) {
            self.seen |= 1 << i;
        }
    }

    fn write<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), C::Error> {
        let null_default = self
            .rules
            .required
            .iter()
            .find(|r| r.key == key && r.nullable)
            .filter(|_| is_null(value))
            .map(|r| r.default);
        match null_default {
            Some(d) => self.inner.serialize_field(key, &d)?,
            None => self.inner.serialize_field(key, &V03(value))?,
        }
        self.mark(key);
        Ok(())
    }
}

impl<C: SerializeStruct> SerializeStruct for ShapedStruct<C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Self::Error> {
        let key = self
            .rules
            .renames
            .iter()
            .find(|(from, _)| *from == key)
            .map_or(key, |&(_, to)| to);
        self.write(key, value)
    }

    fn skip_field(&mut self, key: &'static str) -> Result<(), Self::Error> {
        self.inner.skip_field(key)
    }

    fn end(mut self) -> Result<Self::Ok, Self::Error> {
        for (i, r) in self.rules.required.iter().enumerate() {
            if self.seen & (1 << i) == 0 {
                self.inner.serialize_field(r.key, &r.default)?;
            }
        }
        self.inner.end()
    }
}

/// A sequence, tuple or map whose elements are shaped too.
struct Shaped<C>(C);

/// The element-wise compound serializers: each element shaped in turn.
macro_rules! shaped_elements {
    ($($trait:ident :: $method:ident),*) => {$(
        impl<C: $trait> $trait for Shaped<C> {
            type Ok = C::Ok;
            type Error = C::Error;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
                self.0.$method(&V03(v))
            }
            fn end(self) -> Result<C::Ok, C::Error> {
                self.0.end()
            }
        }
    )*};
}

shaped_elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl<C: SerializeMap> SerializeMap for Shaped<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), C::Error> {
        self.0.serialize_key(k)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
        self.0.serialize_value(&V03(v))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: SerializeStructVariant> SerializeStructVariant for Shaped<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), C::Error> {
        self.0.serialize_field(key, &V03(v))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $method(self, $($arg: $ty),*) -> Result<S::Ok, S::Error> {
            self.0.$method($($arg),*)
        })*
    };
}

impl<S: Serializer> Serializer for Shaper<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Shaped<S::SerializeSeq>;
    type SerializeTuple = Shaped<S::SerializeTuple>;
    type SerializeTupleStruct = Shaped<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Shaped<S::SerializeTupleVariant>;
    type SerializeMap = Shaped<S::SerializeMap>;
    type SerializeStruct = ShapedStruct<S::SerializeStruct>;
    type SerializeStructVariant = Shaped<S::SerializeStructVariant>;

    forward! {
        serialize_bool(v: bool);
        serialize_i8(v: i8);
        serialize_i16(v: i16);
        serialize_i32(v: i32);
        serialize_i64(v: i64);
        serialize_u8(v: u8);
        serialize_u16(v: u16);
        serialize_u32(v: u32);
        serialize_u64(v: u64);
        serialize_f32(v: f32);
        serialize_f64(v: f64);
        serialize_char(v: char);
        serialize_str(v: &str);
        serialize_bytes(v: &[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(name: &'static str);
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&V03(v))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &V03(v))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &V03(v))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(Shaped)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(Shaped)
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(Shaped)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(Shaped)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(Shaped)
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        let rules = rules(name);
        // The length counts what may be written: defaults too (serializers
        // may rely on it, e.g. to write `{}` for zero).
        let inner = self.0.serialize_struct(name, len + rules.required.len())?;
        Ok(ShapedStruct {
            inner,
            rules,
            seen: 0,
        })
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(Shaped)
    }

    fn collect_str<T: std::fmt::Display + ?Sized>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.0.collect_str(v)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}
