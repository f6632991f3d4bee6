-- Deletes ask whether an object key is still referenced (variants are content-addressed and
-- shared by duplicates across albums); orphan cleanup asks the same of every stored object.
CREATE INDEX photo_variants_object_key ON photo_variants (object_key);
CREATE INDEX photos_original_key ON photos (original_key);
