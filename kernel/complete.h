/*
 * complete.h -- what the cursor is on: completion (complete_request) and
 * the magic whose help inspect_request shows. Byte offsets; the message
 * table converts the protocol's code points.
 */
#ifndef PK_COMPLETE_H
#define PK_COMPLETE_H

#include <stddef.h>

#include <jansson.h>

#include "lib/session.h"
#include "lib/stage.h"

/* Completion of code at byte offset pos: $NAME and ${NAME (the variables
 * of sess and the environment's names; none when sess is NULL), magic names
 * at the start of a line, --options of the line's magic, file paths.
 * Returns a new array of matches (NULL when out of memory); [*start, *end)
 * is the replaced byte range. Reads sess and the environment: call it on the
 * thread that runs the stages. */
json_t *complete_code(const char *code, size_t len, size_t pos, const ss_session *sess,
                      size_t *start, size_t *end);

/* The magic named by the word at byte offset pos, else the magic of the
 * logical line holding pos; NULL when neither names one. */
const st_stage *complete_inspect(const char *code, size_t len, size_t pos);

#endif
