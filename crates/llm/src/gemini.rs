//! Gemini generateContent. (Being written; see the adapter task.)
