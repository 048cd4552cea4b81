/*
 * test_capi.c: the C ABI as a C program uses it, error paths included; run by
 * scripts/test-capi.sh against the shared and the static library, and under valgrind.
 *
 *   test_capi MODEL.gguf SCRATCH_DIR
 *
 * Sessions run one thread each (valgrind serialises threads, and spinning workers
 * would only slow it down); two OS threads generate at once on one model.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synapse.h"

static int failures;

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "%s:%d: failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
                    synapse_last_error());                                                       \
            failures++;                                                                          \
        }                                                                                        \
    } while (0)

/* The call fails with `status` and a last-error message containing `needle`. */
#define CHECK_FAILS(call, status, needle)                            \
    do {                                                             \
        synapse_status s_ = (call);                                  \
        CHECK(s_ == (status));                                       \
        CHECK(strstr(synapse_last_error(), (needle)) != NULL);       \
    } while (0)

static const char *PROMPT = "The capital of France is";

static synapse_session_params one_thread(uint32_t ctx_size) {
    synapse_session_params p = synapse_session_params_default();
    p.ctx_size = ctx_size;
    p.threads = 1;
    return p;
}

static synapse_sampling_params greedy(uint32_t max_tokens) {
    synapse_sampling_params p = synapse_sampling_params_default();
    p.temperature = 0;
    p.max_tokens = max_tokens;
    p.ignore_eos = true;
    return p;
}

/* Token ids a callback collects; it stops the generation after `stop_after` (0: never). */
struct tokens {
    uint32_t ids[64];
    size_t n, stop_after, calls_without_token;
    char text[1024];
    size_t text_len;
};

static bool collect(uint32_t id, const char *text, size_t len, void *user_data) {
    struct tokens *t = user_data;
    CHECK(text[len] == '\0');
    if (t->text_len + len < sizeof t->text) {
        memcpy(t->text + t->text_len, text, len);
        t->text_len += len;
        t->text[t->text_len] = '\0';
    }
    if (id == SYNAPSE_NO_TOKEN) {
        t->calls_without_token++;
        return true;
    }
    if (t->n < 64) t->ids[t->n++] = id;
    return t->stop_after == 0 || t->n < t->stop_after;
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fwrite(data, 1, len, f);
    fclose(f);
}

static void test_bad_files(const char *model_path, const char *scratch) {
    synapse_model *model = NULL;
    char path[4096];

    CHECK_FAILS(synapse_model_load("/nonexistent/model.gguf", NULL, &model), SYNAPSE_IO,
                "/nonexistent/model.gguf");
    CHECK(model == NULL);

    /* A PNG renamed .gguf. */
    static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13};
    snprintf(path, sizeof path, "%s/picture.gguf", scratch);
    write_file(path, png, sizeof png);
    CHECK_FAILS(synapse_model_load(path, NULL, &model), SYNAPSE_BAD_FORMAT, "picture.gguf");
    CHECK(model == NULL);

    /* The real model cut short. */
    FILE *f = fopen(model_path, "rb");
    CHECK(f != NULL);
    if (f) {
        static unsigned char head[1 << 16];
        size_t n = fread(head, 1, sizeof head, f);
        fclose(f);
        snprintf(path, sizeof path, "%s/truncated.gguf", scratch);
        write_file(path, head, n);
        CHECK_FAILS(synapse_model_load(path, NULL, &model), SYNAPSE_BAD_FORMAT, "truncated.gguf");
        CHECK_FAILS(synapse_model_load_from_memory(head, n, NULL, &model), SYNAPSE_BAD_FORMAT,
                    "<memory>");
        CHECK(model == NULL);
    }
    CHECK_FAILS(synapse_model_load_from_memory(png, sizeof png, NULL, &model), SYNAPSE_BAD_FORMAT,
                "<memory>");
    CHECK_FAILS(synapse_model_load_from_memory(NULL, 10, NULL, &model), SYNAPSE_INVALID_ARGUMENT,
                "data is NULL");
    CHECK_FAILS(synapse_model_load(model_path, NULL, NULL), SYNAPSE_INVALID_ARGUMENT, "out is NULL");
}

static void test_null_handles(void) {
    struct synapse_model_info info;
    synapse_session *session = NULL;
    uint32_t ids[4];
    size_t n = 0;
    CHECK_FAILS(synapse_model_info(NULL, &info), SYNAPSE_INVALID_ARGUMENT, "synapse_model handle is NULL");
    CHECK_FAILS(synapse_session_new(NULL, NULL, &session), SYNAPSE_INVALID_ARGUMENT, "NULL");
    CHECK_FAILS(synapse_tokenize(NULL, "a", 1, false, ids, 4, &n), SYNAPSE_INVALID_ARGUMENT, "NULL");
    CHECK_FAILS(synapse_generate(NULL, "a", 1, NULL, NULL, NULL, NULL), SYNAPSE_INVALID_ARGUMENT,
                "synapse_session handle is NULL");
    CHECK_FAILS(synapse_session_eval(NULL, ids, 0), SYNAPSE_INVALID_ARGUMENT, "NULL");
    /* Freeing NULL is allowed, as free(NULL) is. */
    CHECK(synapse_model_free(NULL) == SYNAPSE_OK);
    CHECK(synapse_session_free(NULL) == SYNAPSE_OK);
}

static void test_model(synapse_model *model) {
    struct synapse_model_info info;
    CHECK(synapse_model_info(model, &info) == SYNAPSE_OK);
    CHECK(strcmp(info.architecture, "llama") == 0);
    CHECK(info.n_vocab == 49152);
    CHECK(info.n_ctx_train == 8192);
    /* SmolLM2-135M: 134,515,008 parameters (tied embeddings counted once). */
    CHECK(info.n_params == 134515008);
    CHECK(info.bos == 1 && info.eos == 2);

    /* Tokenize: a buffer too small says how much is needed. */
    uint32_t ids[64];
    size_t n = 0, needed = 0;
    CHECK_FAILS(synapse_tokenize(model, PROMPT, strlen(PROMPT), true, ids, 2, &needed),
                SYNAPSE_BUFFER_TOO_SMALL, "2 items");
    CHECK(needed == 5);
    CHECK(synapse_tokenize(model, PROMPT, strlen(PROMPT), true, ids, 64, &n) == SYNAPSE_OK);
    CHECK(n == needed);
    /* Length-delimited: only the first 3 bytes ("The"). */
    size_t n3 = 0;
    CHECK(synapse_tokenize(model, PROMPT, 3, true, ids + 32, 32, &n3) == SYNAPSE_OK);
    CHECK(n3 == 1 && ids[32] == ids[0]);
    CHECK_FAILS(synapse_tokenize(model, "caf\xc3", 4, true, ids, 64, &n), SYNAPSE_INVALID_ARGUMENT,
                "not valid UTF-8 (at byte 3)");

    /* Back to text, exactly, and a buffer too small for the terminator. */
    char text[256];
    size_t len = 0;
    CHECK(synapse_detokenize(model, ids, 5, text, sizeof text, &len) == SYNAPSE_OK);
    CHECK(len == strlen(PROMPT) && strcmp(text, PROMPT) == 0);
    CHECK_FAILS(synapse_detokenize(model, ids, 5, text, strlen(PROMPT), &len), SYNAPSE_BUFFER_TOO_SMALL,
                "are needed");
    CHECK(len == strlen(PROMPT) + 1);
    uint32_t bad = 49152;
    CHECK_FAILS(synapse_detokenize(model, &bad, 1, text, sizeof text, &len), SYNAPSE_INVALID_ARGUMENT,
                "outside the vocabulary");
    CHECK(synapse_token_to_piece(model, ids[1], text, sizeof text, &len) == SYNAPSE_OK);
    CHECK(len == 8 && strcmp(text, " capital") == 0);

    /* Special-token text is that token only when asked. */
    const char *im = "<|im_start|>";
    CHECK(synapse_tokenize(model, im, strlen(im), true, ids, 64, &n) == SYNAPSE_OK);
    CHECK(n == 1 && ids[0] == 1);
    CHECK(synapse_tokenize(model, im, strlen(im), false, ids, 64, &n) == SYNAPSE_OK);
    CHECK(n > 1);

    /* The chat template. */
    synapse_chat_message msgs[] = {{"user", 4, "Hi!", 3}};
    char rendered[1024];
    CHECK(synapse_chat_apply_template(model, msgs, 1, true, rendered, sizeof rendered, &len) == SYNAPSE_OK);
    CHECK(strstr(rendered, "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n") != NULL);
    CHECK(len == strlen(rendered));
    CHECK_FAILS(synapse_chat_apply_template(model, msgs, 1, true, rendered, 8, &len),
                SYNAPSE_BUFFER_TOO_SMALL, "are needed");
    synapse_chat_message bad_msg = {"user", 4, NULL, 5};
    CHECK_FAILS(synapse_chat_apply_template(model, &bad_msg, 1, true, rendered, sizeof rendered, &len),
                SYNAPSE_INVALID_ARGUMENT, "msgs[0].content is NULL");
}

/* Greedy decoding by hand (eval, logits, argmax) gives the tokens synapse_generate gives. */
static void test_eval_matches_generate(synapse_model *model) {
    synapse_session_params sp = one_thread(64);
    synapse_session *session = NULL;
    CHECK(synapse_session_new(model, &sp, &session) == SYNAPSE_OK);
    const float *logits = NULL;
    size_t n_vocab = 0;
    CHECK_FAILS(synapse_session_logits(session, &logits, &n_vocab), SYNAPSE_INVALID_ARGUMENT,
                "no logits yet");

    uint32_t ids[64];
    size_t n = 0;
    CHECK(synapse_tokenize(model, PROMPT, strlen(PROMPT), true, ids, 64, &n) == SYNAPSE_OK);
    uint32_t by_hand[8];
    CHECK(synapse_session_eval(session, ids, n) == SYNAPSE_OK);
    for (int i = 0; i < 8; i++) {
        CHECK(synapse_session_logits(session, &logits, &n_vocab) == SYNAPSE_OK);
        CHECK(n_vocab == 49152);
        uint32_t best = 0;
        for (uint32_t v = 1; v < n_vocab; v++)
            if (logits[v] > logits[best]) best = v;
        by_hand[i] = best;
        CHECK(synapse_session_eval(session, &best, 1) == SYNAPSE_OK);
    }
    uint32_t out_of_vocab = 50000;
    CHECK_FAILS(synapse_session_eval(session, &out_of_vocab, 1), SYNAPSE_INVALID_ARGUMENT,
                "outside the vocabulary");

    CHECK(synapse_session_reset(session) == SYNAPSE_OK);
    synapse_sampling_params params = greedy(8);
    struct tokens got = {0};
    synapse_generate_result result;
    CHECK(synapse_generate(session, PROMPT, strlen(PROMPT), &params, collect, &got, &result) == SYNAPSE_OK);
    CHECK(result.n_prompt_tokens == n && result.n_tokens == 8 && got.n == 8);
    CHECK(result.stop_reason == SYNAPSE_STOP_LENGTH);
    CHECK(memcmp(got.ids, by_hand, sizeof by_hand) == 0);
    CHECK(strstr(got.text, "Paris") != NULL);
    CHECK(synapse_session_free(session) == SYNAPSE_OK);
}

static void test_generation_limits(synapse_model *model) {
    synapse_session_params sp = one_thread(16);
    synapse_session *session = NULL;
    CHECK(synapse_session_new(model, &sp, &session) == SYNAPSE_OK);

    /* A prompt over the context is refused, and the session stays usable. */
    const char *long_prompt =
        "one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty";
    synapse_sampling_params params = greedy(4);
    CHECK_FAILS(synapse_generate(session, long_prompt, strlen(long_prompt), &params, NULL, NULL, NULL),
                SYNAPSE_CONTEXT_FULL, "does not fit the context of 16 tokens");

    /* A callback that stops early. */
    struct tokens got = {0};
    got.stop_after = 3;
    synapse_generate_result result;
    params = greedy(10);
    CHECK(synapse_generate(session, PROMPT, strlen(PROMPT), &params, collect, &got, &result) == SYNAPSE_OK);
    CHECK(result.stop_reason == SYNAPSE_STOP_CALLBACK);
    CHECK(result.n_tokens == 3 && got.n == 3);

    /* Filling the context stops the generation (not an error). */
    CHECK(synapse_session_reset(session) == SYNAPSE_OK);
    params = greedy(40);
    CHECK(synapse_generate(session, PROMPT, strlen(PROMPT), &params, NULL, NULL, &result) == SYNAPSE_OK);
    CHECK(result.stop_reason == SYNAPSE_STOP_LENGTH && result.n_tokens == 16 - 5 + 1);

    /* A stop string ends it, and is not passed on. */
    CHECK(synapse_session_reset(session) == SYNAPSE_OK);
    synapse_string stop = {"Paris", 5};
    params = greedy(10);
    params.stop = &stop;
    params.n_stop = 1;
    memset(&got, 0, sizeof got);
    CHECK(synapse_generate(session, PROMPT, strlen(PROMPT), &params, collect, &got, &result) == SYNAPSE_OK);
    CHECK(result.stop_reason == SYNAPSE_STOP_STRING);
    CHECK(strstr(got.text, "Paris") == NULL);
    params.n_stop = 2;
    params.stop = NULL;
    CHECK_FAILS(synapse_generate(session, PROMPT, strlen(PROMPT), &params, NULL, NULL, NULL),
                SYNAPSE_INVALID_ARGUMENT, "stop is NULL");

    /* A freed handle is reported, not used; so is a handle of the wrong kind. */
    CHECK(synapse_session_free(session) == SYNAPSE_OK);
    CHECK_FAILS(synapse_session_reset(session), SYNAPSE_INVALID_ARGUMENT, "not a live synapse_session");
    CHECK_FAILS(synapse_session_free(session), SYNAPSE_INVALID_ARGUMENT, "not a live synapse_session");
    struct synapse_model_info info;
    CHECK_FAILS(synapse_model_info((const synapse_model *)session, &info), SYNAPSE_INVALID_ARGUMENT,
                "not a live synapse_model");
}

/* A two-turn chat keeps the first turn's tokens and evaluates only the new ones. */
static void test_chat(synapse_model *model) {
    synapse_session_params sp = one_thread(256);
    synapse_session *session = NULL;
    CHECK(synapse_session_new(model, &sp, &session) == SYNAPSE_OK);
    synapse_sampling_params params = greedy(6);
    params.ignore_eos = false;
    struct tokens first = {0};
    synapse_generate_result r1, r2;
    synapse_chat_message msgs[3] = {{"user", 4, "Hi!", 3}};
    CHECK(synapse_chat(session, msgs, 1, &params, collect, &first, &r1) == SYNAPSE_OK);
    msgs[1] = (synapse_chat_message){"assistant", 9, first.text, first.text_len};
    msgs[2] = (synapse_chat_message){"user", 4, "Thanks.", 7};
    CHECK(synapse_chat(session, msgs, 3, &params, NULL, NULL, &r2) == SYNAPSE_OK);
    CHECK(r1.n_prompt_tokens > 20);
    CHECK(r2.n_prompt_tokens < r1.n_prompt_tokens);
    CHECK(synapse_session_free(session) == SYNAPSE_OK);
}

struct worker {
    synapse_model *model;
    struct tokens got;
    synapse_status status;
};

static void *generate_on_thread(void *arg) {
    struct worker *w = arg;
    synapse_session_params sp = one_thread(64);
    synapse_session *session = NULL;
    w->status = synapse_session_new(w->model, &sp, &session);
    if (w->status != SYNAPSE_OK) return NULL;
    synapse_sampling_params params = greedy(8);
    w->status = synapse_generate(session, PROMPT, strlen(PROMPT), &params, collect, &w->got, NULL);
    synapse_session_free(session);
    return NULL;
}

/* Two threads generate at once on one model, and get what one thread alone gets. */
static void test_threads(synapse_model *model) {
    struct worker alone = {model, {{0}, 0, 0, 0, {0}, 0}, SYNAPSE_OK}, a = alone, b = alone;
    generate_on_thread(&alone);
    pthread_t ta, tb;
    CHECK(pthread_create(&ta, NULL, generate_on_thread, &a) == 0);
    CHECK(pthread_create(&tb, NULL, generate_on_thread, &b) == 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(alone.status == SYNAPSE_OK && a.status == SYNAPSE_OK && b.status == SYNAPSE_OK);
    CHECK(alone.got.n == 8 && a.got.n == 8 && b.got.n == 8);
    CHECK(memcmp(a.got.ids, alone.got.ids, sizeof alone.got.ids) == 0);
    CHECK(memcmp(b.got.ids, alone.got.ids, sizeof alone.got.ids) == 0);
}

/* A session outlives its model's handle. */
static void test_session_outlives_model(const char *model_path) {
    synapse_model_params mp = synapse_model_params_default();
    mp.threads = 1;
    synapse_model *model = NULL;
    CHECK(synapse_model_load(model_path, &mp, &model) == SYNAPSE_OK);
    synapse_session *session = NULL;
    CHECK(synapse_session_new(model, NULL, &session) == SYNAPSE_OK);
    CHECK(synapse_model_free(model) == SYNAPSE_OK);
    CHECK_FAILS(synapse_model_free(model), SYNAPSE_INVALID_ARGUMENT, "not a live synapse_model");
    synapse_sampling_params params = greedy(2);
    synapse_generate_result result;
    CHECK(synapse_generate(session, PROMPT, strlen(PROMPT), &params, NULL, NULL, &result) == SYNAPSE_OK);
    CHECK(result.n_tokens == 2);
    CHECK(synapse_session_free(session) == SYNAPSE_OK);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.gguf SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    CHECK(strlen(synapse_version()) >= 5);
    CHECK(strcmp(synapse_last_error(), "") == 0);
    test_bad_files(argv[1], argv[2]);
    test_null_handles();

    synapse_model *model = NULL;
    CHECK(synapse_model_load(argv[1], NULL, &model) == SYNAPSE_OK);
    if (!model) return 1;
    test_model(model);
    test_eval_matches_generate(model);
    test_generation_limits(model);
    test_chat(model);
    test_threads(model);
    CHECK(synapse_model_free(model) == SYNAPSE_OK);
    test_session_outlives_model(argv[1]);

    if (failures) {
        fprintf(stderr, "test_capi: %d checks failed\n", failures);
        return 1;
    }
    printf("test_capi: all checks passed\n");
    return 0;
}
