//! Who may do what: the roles of operators (people who sign in to the web UI, and the
//! API's tokens) and the actions each allows. One table, read by every front-end, so that
//! the API, the web UI and the CLI refuse the same things.

use std::fmt;

/// An operator's role, from the most to the least trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Everything, tokens and roles included.
    Owner,
    /// Everything but tokens and roles.
    Admin,
    /// People, their credentials and memberships, guests; opens doors. No door, driver or
    /// integration settings.
    FrontDesk,
    /// Reads everything an admin reads, changes nothing.
    Viewer,
    /// A wall screen: the facility display, nothing else.
    Display,
    /// A building system (a fire panel's gateway, a building-management system, a relay's
    /// input): raises an emergency release and reports door inputs, nothing else. Not on the ladder of the roles above.
    Building,
}

/// What a request wants to do; each route names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Show the facility display.
    ShowDisplay,
    /// Read the directory, the events, attendance, settings (never secrets).
    Read,
    /// Create, change, suspend or remove people; issue and revoke credentials; put people
    /// in groups and take them out; ask decisions.
    ManagePeople,
    /// Open a door now.
    OpenDoors,
    /// Doors and drivers, groups, grants, sites, webhooks, integrations.
    Configure,
    /// Tokens and operators' roles.
    ManageAccess,
    /// Release a site's exit-route doors in an emergency.
    RaiseEmergency,
    /// Report a door's inputs (position, exit request, tamper, fire).
    ReportInputs,
}

impl Role {
    pub const ALL: [Role; 6] = [Role::Owner, Role::Admin, Role::FrontDesk, Role::Viewer, Role::Display, Role::Building];

    pub fn may(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Owner => true,
            Role::Admin => action != ManageAccess,
            Role::FrontDesk => matches!(action, ShowDisplay | Read | ManagePeople | OpenDoors),
            Role::Viewer => matches!(action, ShowDisplay | Read),
            Role::Display => action == ShowDisplay,
            Role::Building => matches!(action, RaiseEmergency | ReportInputs),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::FrontDesk => "front_desk",
            Role::Viewer => "viewer",
            Role::Display => "display",
            Role::Building => "building",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// An operator's role and where it holds: at every site, or at one site's doors only (a
/// building's own admin or front desk in a chain of spaces). An owner holds everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleAt {
    pub role: Role,
    /// The one site it is limited to; `None` for every site.
    pub site: Option<String>,
}

impl RoleAt {
    pub fn everywhere(role: Role) -> Self {
        Self { role, site: None }
    }

    /// How it is written: `admin`, or `admin@north` when limited to the site `north`.
    pub fn label(&self) -> String {
        match &self.site {
            Some(site) => format!("{}@{site}", self.role),
            None => self.role.as_str().to_owned(),
        }
    }
}

impl From<Role> for RoleAt {
    fn from(role: Role) -> Self {
        Self::everywhere(role)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Action {
    /// In words, for a refusal: "may not {phrase}".
    pub fn phrase(self) -> &'static str {
        match self {
            Action::ShowDisplay => "show the facility display",
            Action::Read => "read the directory and the events",
            Action::ManagePeople => "change people, their credentials or memberships",
            Action::OpenDoors => "open doors",
            Action::Configure => "change doors, groups, grants, sites or integrations",
            Action::ManageAccess => "manage tokens or operators' roles",
            Action::RaiseEmergency => "raise an emergency release",
            Action::ReportInputs => "report door inputs",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_allows_what_it_says_and_the_roles_nest() {
        let actions = [
            Action::ShowDisplay,
            Action::Read,
            Action::ManagePeople,
            Action::OpenDoors,
            Action::Configure,
            Action::ManageAccess,
            Action::RaiseEmergency,
            Action::ReportInputs,
        ];
        let allowed = |role: Role| actions.iter().filter(|a| role.may(**a)).count();
        assert_eq!(Role::ALL.map(allowed), [8, 7, 4, 2, 1, 2]);
        assert!(Role::Building.may(Action::RaiseEmergency) && !Role::Building.may(Action::Read));
        assert!(!Role::FrontDesk.may(Action::RaiseEmergency));
        assert!(!Role::Admin.may(Action::ManageAccess));
        assert!(!Role::FrontDesk.may(Action::Configure) && Role::FrontDesk.may(Action::OpenDoors));
        assert!(!Role::Viewer.may(Action::OpenDoors) && Role::Viewer.may(Action::Read));
        assert!(!Role::Display.may(Action::Read));
        // A console role allows everything the roles below it allow.
        for pair in Role::ALL[..5].windows(2) {
            assert!(actions.iter().all(|a| !pair[1].may(*a) || pair[0].may(*a)), "{pair:?}");
        }
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
