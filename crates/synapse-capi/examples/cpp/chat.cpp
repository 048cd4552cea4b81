// chat.cpp: a multi-turn chat through a small RAII wrapper over synapse.h. Each argument
// is a user message; the replies stream to stdout, in `synapse chat`'s format.
//
//   chat [-m MODEL] [-n MAX_TOKENS] [--temperature T] MESSAGE...
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "synapse.h"

namespace synapse {

// A failed call, with synapse_last_error()'s message.
struct Error : std::runtime_error {
    synapse_status status;
    Error(const std::string &what, synapse_status s)
        : std::runtime_error(what + ": " + synapse_last_error()), status(s) {}
};

inline void check(synapse_status s, const char *what) {
    if (s != SYNAPSE_OK) throw Error(what, s);
}

struct ModelFree {
    void operator()(synapse_model *m) const { synapse_model_free(m); }
};
struct SessionFree {
    void operator()(synapse_session *s) const { synapse_session_free(s); }
};

class Model {
  public:
    // path empty: the default model.
    explicit Model(const std::string &path = "") {
        synapse_model *m = nullptr;
        check(synapse_model_load(path.empty() ? nullptr : path.c_str(), nullptr, &m), "load");
        model_.reset(m);
    }
    synapse_model *get() const { return model_.get(); }

  private:
    std::unique_ptr<synapse_model, ModelFree> model_;
};

struct Message {
    std::string role, content;
};

// A conversation: the messages so far, and a session whose cache holds them.
class Chat {
  public:
    explicit Chat(const Model &model) {
        synapse_session *s = nullptr;
        check(synapse_session_new(model.get(), nullptr, &s), "session");
        session_.reset(s);
    }

    // Adds the user's message and streams the assistant's reply to `out`; the reply
    // joins the conversation.
    template <typename F>
    std::string reply(const std::string &user, const synapse_sampling_params &params, F out) {
        messages_.push_back({"user", user});
        std::vector<synapse_chat_message> msgs;
        for (const Message &m : messages_)
            msgs.push_back({m.role.data(), m.role.size(), m.content.data(), m.content.size()});
        struct Sink {
            F &out;
            std::string text;
        } sink{out, {}};
        auto on_token = [](uint32_t, const char *text, size_t len, void *user_data) -> bool {
            Sink &sink = *static_cast<Sink *>(user_data);
            sink.text.append(text, len);
            sink.out(std::string(text, len));
            return true;
        };
        check(synapse_chat(session_.get(), msgs.data(), msgs.size(), &params, on_token, &sink, nullptr),
              "chat");
        messages_.push_back({"assistant", sink.text});
        return sink.text;
    }

  private:
    std::unique_ptr<synapse_session, SessionFree> session_;
    std::vector<Message> messages_;
};

}  // namespace synapse

int main(int argc, char **argv) {
    std::string model_path;
    synapse_sampling_params params = synapse_sampling_params_default();
    std::vector<std::string> turns;
    for (int i = 1; i < argc; i++) {
        if (!std::strcmp(argv[i], "-m") && i + 1 < argc) model_path = argv[++i];
        else if (!std::strcmp(argv[i], "-n") && i + 1 < argc) params.max_tokens = std::atoi(argv[++i]);
        else if (!std::strcmp(argv[i], "--temperature") && i + 1 < argc) params.temperature = std::atof(argv[++i]);
        else turns.push_back(argv[i]);
    }
    if (turns.empty()) turns = {"Hello! Who are you?", "What can you do?"};
    try {
        synapse::Model model(model_path);
        synapse::Chat chat(model);
        for (const std::string &turn : turns) {
            std::cout << "> " << turn << "\n";
            chat.reply(turn, params, [](const std::string &piece) { std::cout << piece << std::flush; });
            std::cout << "\n";
        }
    } catch (const synapse::Error &e) {
        std::cerr << "chat: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
