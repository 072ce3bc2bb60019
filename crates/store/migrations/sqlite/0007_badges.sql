-- Badges from another badge system's CSV export (`lintel import badges.csv`): the badge
-- number as that system writes it (upper case) and the row's other columns as a JSON
-- object, answered by the badge lookup endpoint. An import replaces the whole table.
CREATE TABLE badges (
    badge TEXT PRIMARY KEY,
    attributes TEXT NOT NULL,
    imported_at BIGINT NOT NULL
);
