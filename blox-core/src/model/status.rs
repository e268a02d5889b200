//! ECS status words as open enums: the known values are variants, and any
//! value ECS adds later is kept verbatim in `Other` instead of failing.

/// Declares an open string enum with serde support and a case-insensitive parser.
macro_rules! open_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this version of blox does not know, kept verbatim.
            Other(String),
        }

        impl $name {
            /// Every known value.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),+];

            /// The ECS spelling of this value.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s,
                }
            }

            /// Parses an ECS value, ignoring ASCII case; unknown values become `Other`.
            pub fn parse(s: &str) -> Self {
                $(if s.eq_ignore_ascii_case($text) { return $name::$variant; })+
                $name::Other(s.to_owned())
            }

            /// Parses only a known value, ignoring ASCII case.
            pub fn parse_known(s: &str) -> Option<Self> {
                match Self::parse(s) {
                    $name::Other(_) => None,
                    v => Some(v),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Ok($name::parse(&s))
            }
        }
    };
}

open_enum!(
    /// The status of a container instance.
    InstanceStatus {
        /// Accepting tasks.
        Active = "ACTIVE",
        /// Being drained: no new tasks are placed and service tasks are moved.
        Draining = "DRAINING",
        /// Deregistered (or no longer listed by ECS; kept for a retention period).
        Inactive = "INACTIVE",
        /// Registration in progress.
        Registering = "REGISTERING",
        /// Deregistration in progress.
        Deregistering = "DEREGISTERING",
        /// Registration failed.
        RegistrationFailed = "REGISTRATION_FAILED",
    }
);

open_enum!(
    /// The last or desired status of a task or container.
    TaskStatus {
        /// Fargate/awsvpc resources being provisioned.
        Provisioning = "PROVISIONING",
        /// Waiting to run.
        Pending = "PENDING",
        /// Being activated (load balancers, service discovery).
        Activating = "ACTIVATING",
        /// Running.
        Running = "RUNNING",
        /// Being deactivated.
        Deactivating = "DEACTIVATING",
        /// Stopping.
        Stopping = "STOPPING",
        /// Resources being released.
        Deprovisioning = "DEPROVISIONING",
        /// Stopped.
        Stopped = "STOPPED",
        /// Deleted.
        Deleted = "DELETED",
    }
);

open_enum!(
    /// How a task was launched.
    LaunchType {
        /// On EC2 container instances.
        Ec2 = "EC2",
        /// On Fargate.
        Fargate = "FARGATE",
        /// On external (ECS Anywhere) instances.
        External = "EXTERNAL",
        /// On managed instances.
        ManagedInstances = "MANAGED_INSTANCES",
    }
);

impl TaskStatus {
    /// Whether the task has reached or is heading for its end.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            TaskStatus::Stopped | TaskStatus::Deleted | TaskStatus::Deprovisioning
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_are_kept_verbatim() {
        let s: InstanceStatus = serde_json::from_str("\"HIBERNATING\"").unwrap();
        assert_eq!(s, InstanceStatus::Other("HIBERNATING".into()));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"HIBERNATING\"");
        assert_eq!(InstanceStatus::parse_known("HIBERNATING"), None);
    }

    #[test]
    fn parsing_ignores_case() {
        assert_eq!(InstanceStatus::parse("draining"), InstanceStatus::Draining);
        assert_eq!(TaskStatus::parse("Running"), TaskStatus::Running);
        assert_eq!(
            InstanceStatus::parse("registration_failed"),
            InstanceStatus::RegistrationFailed
        );
    }
}
