/*
 * generate.c: stream a completion from a model (the default model unless -m says).
 *
 *   generate [-m MODEL] [-n MAX_TOKENS] [--temperature T] [--ignore-eos] [--ids] PROMPT
 *
 * With --ids it prints the generated token ids, one per line, instead of the text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synapse.h"

static bool print_text(uint32_t id, const char *text, size_t len, void *user_data) {
    (void)id;
    (void)user_data;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

static bool print_id(uint32_t id, const char *text, size_t len, void *user_data) {
    (void)text;
    (void)len;
    (void)user_data;
    if (id != SYNAPSE_NO_TOKEN) printf("%u\n", id);
    return true;
}

static int fail(const char *what) {
    fprintf(stderr, "generate: %s: %s\n", what, synapse_last_error());
    return 1;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL;
    synapse_sampling_params sampling = synapse_sampling_params_default();
    bool ids = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) model_path = argv[++i];
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) sampling.max_tokens = (uint32_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--temperature") && i + 1 < argc) sampling.temperature = (float)atof(argv[++i]);
        else if (!strcmp(argv[i], "--ignore-eos")) sampling.ignore_eos = true;
        else if (!strcmp(argv[i], "--ids")) ids = true;
        else if (!prompt && argv[i][0] != '-') prompt = argv[i];
        else {
            fprintf(stderr, "usage: %s [-m MODEL] [-n MAX_TOKENS] [--temperature T] [--ignore-eos] [--ids] PROMPT\n", argv[0]);
            return 2;
        }
    }
    if (!prompt) prompt = "The capital of France is";

    synapse_model *model = NULL;
    if (synapse_model_load(model_path, NULL, &model) != SYNAPSE_OK) return fail("cannot load the model");
    synapse_session *session = NULL;
    if (synapse_session_new(model, NULL, &session) != SYNAPSE_OK) {
        synapse_model_free(model);
        return fail("cannot make a session");
    }
    synapse_generate_result result;
    synapse_status status = synapse_generate(session, prompt, strlen(prompt), &sampling,
                                             ids ? print_id : print_text, NULL, &result);
    if (status == SYNAPSE_OK) {
        if (!ids) printf("\n");
        fprintf(stderr, "%zu prompt tokens, %zu generated (%.1f tok/s)\n", result.n_prompt_tokens,
                result.n_tokens, result.decode_ms > 0 ? result.n_tokens * 1000.0 / result.decode_ms : 0.0);
    }
    synapse_session_free(session);
    synapse_model_free(model);
    return status == SYNAPSE_OK ? 0 : fail("generation failed");
}
