"""Infrastructure: storage. Every table, every migration and every SQL statement of Kinetic Chain lives here."""
